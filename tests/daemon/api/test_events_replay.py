"""The API as the README shows it, against a real daemon: its curl examples run verbatim; an
event stream of a finished task replays the task's events and closes (`?follow=false` does so
for a live one), while a live task's stream stays open; a refusal by the guard (401) or by
the router (404) has the documented error shape."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import ROOT
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, use_scenario

pytestmark = pytest.mark.slow

QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
TWO = {
    "latency": QUICK,
    "plan": {
        "streams": [
            {
                "id": sid,
                "title": f"Part {sid}",
                "job": f"Write part {sid}.",
                "output_definition": f"The {sid} part.",
                "ownership": [f"part-{sid}/"],
                "acceptance_check": "It is there.",
            }
            for sid in ("a", "b")
        ]
    },
}
SLOW = {**TWO, "latency": {**QUICK, "planner": 60.0}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    home = tmp_path_factory.mktemp("events-home")
    with running_simulator(TWO) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            yield d, sim
        finally:
            d.stop()


def _done(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (t := d.rpc("task/get", {"task_id": task_id})["result"])["state"]
            in {"completed", "failed", "canceled"}
            and t
        ),
        60,
    )


def _ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r"^id: (\d+)", body, re.M)]


def test_a_finished_tasks_stream_replays_and_closes(daemon: tuple[DaemonProcess, Any]) -> None:
    d, sim = daemon
    use_scenario(sim, TWO)
    task_id = d.rpc("task/submit", {"goal": "Write two parts"})["result"]["task_id"]
    _done(d, task_id)
    with d.http() as h:
        body = h.get(f"/v1/tasks/{task_id}/events").text  # returns: the stream ended
        ids = _ids(body)
        assert ids == sorted(ids) and len(ids) > 5
        assert "event: task.state" in body and '"state": "completed"' in body
        # Resumed after the third event: the rest, once each, then the end.
        rest = h.get(f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": str(ids[2])}).text
        assert _ids(rest) == ids[3:]


def test_a_live_tasks_stream_follows_unless_asked_not_to(
    daemon: tuple[DaemonProcess, Any],
) -> None:
    d, sim = daemon
    use_scenario(sim, SLOW)
    task_id = d.rpc("task/submit", {"goal": "Write two parts"})["result"]["task_id"]
    try:
        with d.http() as h:
            replayed = h.get(f"/v1/tasks/{task_id}/events", params={"follow": "false"}).text
            assert '"state": "queued"' in replayed or '"state": "planning"' in replayed
            # Followed: it stays open while the task is live (a read times out, nothing ends).
            with pytest.raises(httpx.ReadTimeout):
                with h.stream(
                    "GET", f"/v1/tasks/{task_id}/events", timeout=httpx.Timeout(3.0, read=3.0)
                ) as r:
                    for _ in r.iter_bytes():
                        pass
    finally:
        d.rpc("task/cancel", {"task_id": task_id})


def test_refusals_have_the_documented_error_shape(daemon: tuple[DaemonProcess, Any]) -> None:
    d, _ = daemon
    no_token = httpx.get(f"{d.url}/v1/tasks", timeout=10)
    assert no_token.status_code == 401
    error = no_token.json()["error"]
    assert error["code"] == -32004 and "bearer token" in error["message"]
    assert error["data"] == {"status": 401}
    with d.http() as h:
        missing = h.get("/v1/nothing-here")
        assert missing.status_code == 404
        assert set(missing.json()["error"]) == {"code", "message", "data"}
        foreign = h.get("/v1/tasks", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"]["code"] == -32600


def test_the_readme_curl_examples_run_verbatim(daemon: tuple[DaemonProcess, Any]) -> None:
    for tool, package in (("curl", "curl"), ("jq", "jq")):
        assert shutil.which(tool), f"the README's examples need {tool}: apt-get install {package}"
    d, sim = daemon
    use_scenario(sim, SLOW)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The API in brief", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    script = block.group(1)
    assert "<id>" not in script
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, "TIERD_HOME": str(d.home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"jsonrpc":"2.0"' in out.replace(" ", "") and '"goal":"Draft a launch plan"' in out
    assert '"state":"canceled"' in out.replace(" ", "")
    # The last command: the canceled task's events, replayed, and then curl returned.
    assert "event: task.state" in out and out.rstrip().endswith("}")
    listed = d.rpc("task/list", {"limit": 5})["result"]["tasks"]
    assert sum(t["goal"] == "Draft a launch plan" for t in listed) == 2
    for t in listed:
        if t["state"] not in {"completed", "failed", "canceled"}:
            d.rpc("task/cancel", {"task_id": t["id"]})
