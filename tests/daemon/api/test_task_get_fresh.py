"""task/get is never stale, against a real daemon whose answers are kept (`detail_cache`).

A client polls task/get all along (so answers are kept and served again) while the test
follows the task's event stream and acts on it: each event is read with task/get at once
and must show there (a question the moment it is asked, the wait for an answer, the wait
for approval); an answer and a cancel show in the very next task/get; at each resting point
task/get gives what the REST read, which is built afresh, gives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from support.daemon import DaemonProcess, task_of, write_config
from support.plans import stream
from support.simulator import running_simulator

pytestmark = pytest.mark.slow

FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}
QUESTION = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b")]},
    "streams": {"a": {"reply": "question", "question": "Which region should part a cover?"}},
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("home")
    with running_simulator(QUESTION) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home, logs=home).start()
        try:
            yield d
        finally:
            d.stop()


def fresh(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    """The task as the REST route builds it, each time anew."""
    with d.http() as h:
        got: dict[str, Any] = h.get(f"/v1/tasks/{task_id}").json()
        return got


class Poller(threading.Thread):
    """A client asking task/get over and over: the daemon keeps its answer and serves it."""

    def __init__(self, d: DaemonProcess, task_id: str) -> None:
        super().__init__(daemon=True)
        self.d, self.task_id = d, task_id
        self.stop = threading.Event()
        self.calls = 0

    def run(self) -> None:
        request = {"jsonrpc": "2.0", "id": 1, "method": "task/get"}
        with self.d.http() as h:
            while not self.stop.is_set():
                reply = h.post("/rpc", json={**request, "params": {"task_id": self.task_id}})
                assert reply.status_code == 200 and "result" in reply.json(), reply.text
                self.calls += 1


def test_what_changed_shows_in_the_next_task_get(daemon: DaemonProcess) -> None:
    d = daemon
    submitted = d.rpc(
        "task/submit", {"goal": "Write a short market note", "options": {"approval": "required"}}
    )
    task_id = submitted["result"]["task_id"]
    poller = Poller(d, task_id)
    poller.start()
    seen: list[str] = []
    headers = {"Authorization": f"Bearer {d.token}"}
    try:
        with (
            httpx.Client(base_url=d.url, headers=headers, timeout=httpx.Timeout(120.0)) as h,
            connect_sse(h, "GET", f"/v1/tasks/{task_id}/events") as events,
        ):
            for sse in events.iter_sse():
                if not sse.data:
                    continue  # a keep-alive ping: a quiet stretch of more than 10 s
                data = json.loads(sse.data)["data"]
                state = data.get("state") if sse.event == "task.state" else None
                seen.append(f"{sse.event}:{state or ''}")
                if sse.event == "question":
                    asked = task_of(d, task_id)["questions"]
                    assert data["question_id"] in [q["id"] for q in asked], asked
                elif state == "input_required":
                    task = task_of(d, task_id)
                    assert task["state"] == "input_required"
                    (question,) = task["questions"]
                    assert question["answer"] is None
                    d.rpc("task/answer", {"task_id": task_id, "answers": {question["id"]: "EMEA"}})
                    task = task_of(d, task_id)
                    assert task["questions"][0]["answer"] == "EMEA"
                    assert task["state"] != "input_required"
                elif state == "awaiting_approval":
                    task = task_of(d, task_id)
                    assert task["state"] == "awaiting_approval" and task["result"]
                    assert task == fresh(d, task_id)  # at rest: the kept answer is the fresh one
                    assert d.rpc("task/cancel", {"task_id": task_id})["result"]
                    assert task_of(d, task_id)["state"] == "canceled"
                elif state in {"completed", "failed", "canceled"}:
                    break
    finally:
        poller.stop.set()
        poller.join(30)
    assert "question:" in seen and "task.state:awaiting_approval" in seen, seen
    assert seen[-1] == "task.state:canceled", seen
    assert task_of(d, task_id) == fresh(d, task_id)
    assert poller.calls > 10  # it was asking all along
