"""Deleting a task through a real daemon on the simulator: an ended task goes with everything
tierd kept of it (its rows, its folder of attachments, its checkpoint thread), a live or
waiting one is refused naming its state with nothing removed, an unknown id is 404, two
deletions at once give one 200 and one 404, a client following the task's events sees its
stream end, and a restart does not bring it back.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, use_scenario

from daemon.service.attachments.pdf import encode_png

pytestmark = pytest.mark.slow

QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
ENDED = {"completed", "failed", "canceled"}


def tiny_png() -> bytes:
    """A 2x2 PNG, by way of the product's own encoder (the one that renders PDF pages)."""
    return encode_png(2, 2, 6, bytes(range(12)))


PHOTO = {
    "name": "photo.png",
    "media_type": "image/png",
    "data": base64.b64encode(tiny_png()).decode(),
}


def stream(id_: str, *attachments: str) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Stream {id_}",
        "job": f"Do {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": [f"{id_}/"],
        "attachments": list(attachments),
    }


SCENARIO = {
    "latency": QUICK,
    "plan": {
        "streams": [stream("look", "photo.png"), stream("other")],
        "attachments": [{"name": "photo.png", "description": "A grey square."}],
    },
}
#: Tasks stay in planning: the planner takes a minute.
SLOW = {**SCENARIO, "latency": {**QUICK, "planner": 60.0}}


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(SCENARIO) as s:
        yield s


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sim: Any) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("home")
    write_config(home, sim.url)
    d = DaemonProcess(home, logs=home).start()
    try:
        yield d
    finally:
        d.stop()
    log = (home / "daemon.err").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(autouse=True)
def quick(sim: Any) -> None:
    use_scenario(sim, SCENARIO)


def submit(d: DaemonProcess, **params: Any) -> str:
    """A task with the photo (the scenario's plan gives it to a stream)."""
    reply = d.rpc("task/submit", {"goal": "Describe the photo", "attachments": [PHOTO], **params})
    assert "result" in reply, reply
    task_id: str = reply["result"]["task_id"]
    return task_id


def state(d: DaemonProcess, task_id: str) -> str:
    got: str = d.rpc("task/get", {"task_id": task_id})["result"]["state"]
    return got


def reaches(d: DaemonProcess, task_id: str, wanted: set[str]) -> str:
    try:
        return wait_for(lambda: (s := state(d, task_id)) in wanted and s, timeout=90, interval=0.1)
    except AssertionError:
        task = d.rpc("task/get", {"task_id": task_id})["result"]
        raise AssertionError(f"{task_id} is {task['state']}, not {wanted}: {task}") from None


def checkpoint_rows(home: Path, task_id: str) -> int:
    """The task's rows in LangGraph's checkpoint database (read-only)."""
    conn = sqlite3.connect(f"file:{home / 'checkpoints.db'}?mode=ro", uri=True)
    try:
        return sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = ?", (task_id,)).fetchone()[0]
            for t in ("checkpoints", "writes")
        )
    finally:
        conn.close()


def store_rows(home: Path, task_id: str) -> dict[str, int]:
    """The task's rows in every table of the store that has a task_id column (read-only)."""
    conn = sqlite3.connect(f"file:{home / 'tierd.db'}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {
            n: conn.execute(f'SELECT count(*) FROM "{n}" WHERE task_id = ?', (task_id,)).fetchone()[
                0
            ]
            for n in names
            if "task_id" in {c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')}
        }
        found["tasks"] = conn.execute(
            "SELECT count(*) FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()[0]
        found["task.deleted"] = conn.execute(
            "SELECT count(*) FROM events WHERE task_id = ? AND type = 'task.deleted'", (task_id,)
        ).fetchone()[0]
        return found
    finally:
        conn.close()


def listed(d: DaemonProcess) -> set[str]:
    return {t["id"] for t in d.rpc("task/list", {"limit": 500})["result"]["tasks"]}


def test_an_ended_task_goes_with_its_rows_folder_and_checkpoints(daemon: DaemonProcess) -> None:
    task_id = submit(daemon)
    assert reaches(daemon, task_id, ENDED) == "completed"
    folder = daemon.home / "tasks" / task_id
    assert (folder / "attachments").is_dir()
    assert checkpoint_rows(daemon.home, task_id) > 0
    before = store_rows(daemon.home, task_id)
    assert before["streams"] == 2 and before["attachments"] == 1 and before["usage"] > 0

    with daemon.http() as h:
        r = h.delete(f"/v1/tasks/{task_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task_id"] == task_id and body["state"] == "completed"
    removed = body["removed"]
    assert removed["rows"]["tasks"] == 1 and removed["rows"]["attachments"] == 1
    assert removed["rows"]["streams"] == 2 and removed["rows"]["events"] == before["events"]
    assert removed["folder"] is True and removed["checkpoints"] is True
    assert removed["worktrees"] == 0 and removed["branches"] == []
    assert body["kept"] == {"branch": None, "patch": None, "left": []}
    assert body["incomplete"] == []

    # Gone for every client: REST and JSON-RPC 404, not listed, no file, no checkpoint.
    with daemon.http() as h:
        got = h.get(f"/v1/tasks/{task_id}")
        assert got.status_code == 404 and got.json()["error"]["code"] == -32001
        assert h.get(f"/v1/tasks/{task_id}/events").status_code == 404
    assert daemon.rpc("task/get", {"task_id": task_id})["error"]["code"] == -32001
    assert task_id not in listed(daemon)
    assert not folder.exists()
    assert checkpoint_rows(daemon.home, task_id) == 0
    after = store_rows(daemon.home, task_id)
    # Of all it had, only the event that says it was deleted.
    assert after == {**{t: 0 for t in before}, "events": 1, "task.deleted": 1}
    # A second deletion: it is not there any more.
    again = daemon.rpc("task/delete", {"task_id": task_id})
    assert again["error"]["code"] == -32001


def test_a_live_or_waiting_task_is_refused_and_keeps_everything(
    daemon: DaemonProcess, sim: Any
) -> None:
    use_scenario(sim, SLOW)
    live = submit(daemon)
    reaches(daemon, live, {"planning"})
    with daemon.http() as h:
        r = h.delete(f"/v1/tasks/{live}")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == -32002 and error["data"] == {"task_id": live, "state": "planning"}
    assert f"task {live} is planning" in error["message"] and "cancel it first" in error["message"]
    assert state(daemon, live) == "planning"
    assert (daemon.home / "tasks" / live / "attachments").is_dir()

    use_scenario(sim, SCENARIO)
    waiting = submit(daemon, options={"approval": "required"})
    reaches(daemon, waiting, {"awaiting_approval"})
    refused = daemon.rpc("task/delete", {"task_id": waiting})["error"]
    assert refused["code"] == -32002 and "is awaiting_approval" in refused["message"]
    assert state(daemon, waiting) == "awaiting_approval"
    assert store_rows(daemon.home, waiting)["tasks"] == 1

    # Once canceled, it goes.
    for task_id in (live, waiting):
        assert daemon.rpc("task/cancel", {"task_id": task_id})["result"]["state"] == "canceled"
        deleted = daemon.rpc("task/delete", {"task_id": task_id})["result"]
        assert deleted["state"] == "canceled" and deleted["removed"]["rows"]["tasks"] == 1
    assert not (daemon.home / "tasks" / live).exists()


def test_an_unknown_task_is_not_found(daemon: DaemonProcess) -> None:
    with daemon.http() as h:
        r = h.delete("/v1/tasks/tffffffffffff00000000")
        assert r.status_code == 404 and r.json()["error"]["code"] == -32001
        assert h.delete("/v1/tasks/" + "x" * 65).status_code == 422
    assert daemon.rpc("task/delete", {"task_id": "tnope"})["error"]["code"] == -32001


def _delete_via(d: DaemonProcess, task_id: str, via: str) -> int:
    """DELETE over REST, or task/delete over JSON-RPC, as an HTTP-like status."""
    with httpx.Client(
        base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=60
    ) as h:
        if via == "rest":
            return h.delete(f"/v1/tasks/{task_id}").status_code
        body = {"jsonrpc": "2.0", "id": 1, "method": "task/delete", "params": {"task_id": task_id}}
        reply = h.post("/rpc", json=body).json()
        if "result" in reply:
            return 200
        return {-32001: 404, -32002: 409}.get(reply["error"]["code"], 500)


def test_two_deletions_at_once_one_deletes_and_one_is_told_it_is_gone(
    daemon: DaemonProcess,
) -> None:
    tasks = [submit(daemon) for _ in range(3)]
    for task_id in tasks:
        reaches(daemon, task_id, ENDED)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {
            (task_id, via): pool.submit(_delete_via, daemon, task_id, via)
            for task_id in tasks
            for via in ("rest", "rpc")
        }
    for task_id in tasks:
        codes = sorted(futures[(task_id, via)].result() for via in ("rest", "rpc"))
        assert codes == [200, 404], (task_id, codes)
        assert store_rows(daemon.home, task_id)["task.deleted"] == 1  # deleted once
        assert not (daemon.home / "tasks" / task_id).exists()


def test_an_approval_racing_a_deletion_one_of_them_wins(daemon: DaemonProcess) -> None:
    task_id = submit(daemon, options={"approval": "required"})
    reaches(daemon, task_id, {"awaiting_approval"})
    with ThreadPoolExecutor(max_workers=2) as pool:
        approve = pool.submit(
            daemon.rpc, "task/approve", {"task_id": task_id, "decision": "approve"}
        )
        delete = pool.submit(_delete_via, daemon, task_id, "rest")
    assert "result" in approve.result(), approve.result()
    # Sent while it waited: refused (it was live); or, the approval done first, it went.
    assert delete.result() in (409, 200)
    if delete.result() == 409:
        assert reaches(daemon, task_id, ENDED) == "completed"
        assert _delete_via(daemon, task_id, "rpc") == 200
    assert store_rows(daemon.home, task_id)["tasks"] == 0


def test_a_client_following_the_task_sees_its_stream_end(daemon: DaemonProcess) -> None:
    task_id = submit(daemon)
    seen: list[dict[str, Any]] = []
    ended = threading.Event()

    def follow() -> None:
        with daemon.http() as h, h.stream("GET", f"/v1/tasks/{task_id}/events") as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:]))
        ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    reaches(daemon, task_id, ENDED)
    wait_for(lambda: any(e["type"] == "task.state" and e["data"]["state"] in ENDED for e in seen))
    assert not ended.is_set()  # an ended task's live stream stays open until it goes
    assert _delete_via(daemon, task_id, "rest") == 200
    assert ended.wait(30), "the stream did not end"
    assert seen[-1]["type"] == "task.deleted" and seen[-1]["task_id"] == task_id


def test_a_deleted_task_stays_deleted_after_a_restart(tmp_path: Path, sim: Any) -> None:
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, sim.url)
    d = DaemonProcess(home).start()
    try:
        gone, kept = submit(d), submit(d)
        for task_id in (gone, kept):
            reaches(d, task_id, ENDED)
        assert d.rpc("task/delete", {"task_id": gone})["result"]["task_id"] == gone
    finally:
        d.stop()
    d = DaemonProcess(home).start()
    try:
        assert d.rpc("task/get", {"task_id": gone})["error"]["code"] == -32001
        assert listed(d) == {kept}
        assert d.rpc("task/get", {"task_id": "@last"})["result"]["id"] == kept
        # A new task with attachments (the folders are swept before the first is kept).
        fresh = submit(d)
        reaches(d, fresh, ENDED)
    finally:
        d.stop()
    assert not (home / "tasks" / gone).exists() and (home / "tasks" / kept).is_dir()
    assert checkpoint_rows(home, gone) == 0 and checkpoint_rows(home, kept) > 0
    nothing = {t: 0 for t in store_rows(home, kept)}
    assert store_rows(home, gone) == {**nothing, "events": 1, "task.deleted": 1}
