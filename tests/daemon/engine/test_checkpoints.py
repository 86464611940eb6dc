"""A damaged checkpoint database stops the daemon at start, with what to do; nothing is lost.

Random bytes in `checkpoints.db` used to let the daemon start, accept tasks and fail every one
with "internal error in the workflow". Now the engine checks the file before any task runs on
it: `tierd serve` refuses to start with one line naming the file and saying to move it away,
and once it is moved, a fresh checkpoint file is made and the unfinished task resumes from
its saved steps (the simulator sees no finished step asked again).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from support.daemon import DaemonProcess, wait_for, write_config
from support.plans import stream
from support.simulator import running_simulator, stats, use_scenario

from daemon.engine import checkpoints
from daemon.engine.errors import CheckpointsDamaged
from daemon.engine.runner import Runner
from daemon.engine.workflow import Workflow
from daemon.store.store import Store

TERMINAL = {"completed", "failed", "canceled"}


FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
#: Stream a finishes at once, stream b takes a minute: the daemon stops with b in flight.
HALF_DONE = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b")]},
    "streams": {"b": {"latency": 60.0}},
}
DONE_QUICKLY = {"latency": FAST, "plan": {"streams": [stream("a"), stream("b")]}}


def damage(path: Path) -> None:
    """Random bytes where the checkpoint database was (its WAL files gone with it)."""
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(64 * 1024))


# --- in process ----------------------------------------------------------------------------------


async def test_random_bytes_are_refused_naming_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    damage(path)
    with pytest.raises(CheckpointsDamaged) as refused:
        await checkpoints.check(path)
    message = str(refused.value)
    assert str(path) in message and "not a database" in message
    assert "Move it away" in message and "resume from their saved steps" in message


async def test_a_page_damaged_deep_inside_is_found_before_any_task_runs(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE writes (id INTEGER PRIMARY KEY, blob TEXT)")
        conn.executemany("INSERT INTO writes (blob) VALUES (?)", [("x" * 500,)] * 200)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    page = 3  # a b-tree page of the table: its header and cells become garbage
    data[page * page_size : page * page_size + 200] = os.urandom(200)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointsDamaged):
        await checkpoints.check(path)


async def test_a_sound_file_and_a_missing_one_pass(tmp_path: Path) -> None:
    await checkpoints.check(None)
    await checkpoints.check(tmp_path / "none-yet.db")
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    try:
        workflow = Workflow(store, None, signals=None)  # type: ignore[arg-type]
        await workflow.open(tmp_path / "checkpoints.db")  # made by LangGraph
        await workflow.close()
        await checkpoints.check(tmp_path / "checkpoints.db")
    finally:
        await store.close()


async def test_no_task_starts_on_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    damage(path)
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    runner = Runner(store, None, checkpoints=path)  # type: ignore[arg-type]
    try:
        with pytest.raises(CheckpointsDamaged):
            await runner.resume_all()
        with pytest.raises(CheckpointsDamaged):
            await Workflow(store, None, signals=None).open(path)  # type: ignore[arg-type]
    finally:
        await runner.stop()
        await store.close()


# --- a real daemon -------------------------------------------------------------------------------


def refused_start(d: DaemonProcess) -> tuple[int, str]:
    proc = d.spawn()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
def test_a_damaged_checkpoint_file_stops_serve_and_moving_it_away_resumes_the_task(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_simulator(HALF_DONE) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        with d.client() as client:
            task_id = client.submit("Write the two parts")["task_id"]

            def a_done_b_running() -> bool:
                streams = {s["id"]: s["state"] for s in client.get(task_id)["streams"]}
                return streams.get("a") == "accepted" and streams.get("b") == "running"

            wait_for(a_done_b_running, 60)
        d.stop()  # the task stays unfinished, for the next start to resume
        path = home / "checkpoints.db"
        assert path.exists()
        damage(path)

        code, err = refused_start(DaemonProcess(home))
        assert code != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1, err  # one line, no traceback
        assert str(path) in lines[0] and "damaged" in lines[0] and "Move it away" in lines[0]
        assert not (home / "daemon.json").exists()

        path.rename(home / "checkpoints.db.damaged")
        use_scenario(sim, DONE_QUICKLY)
        d = DaemonProcess(home).start()
        try:
            with d.client() as client:
                task = wait_for(lambda: (t := client.get(task_id))["state"] in TERMINAL and t, 60)
        finally:
            d.stop()
        assert task["state"] == "completed", task["error"]
        # Resumed from the step memo: the plan and stream a were not asked for again.
        answered = [c for c in stats(sim.url)["calls"] if c["status"] == 200]
        assert [c["purpose"] for c in answered if c["purpose"] == "plan"] == []
        assert [c for c in answered if c["stream_id"] == "a"] == []
        assert [c["purpose"] for c in answered if c["stream_id"] == "b"] == ["execute", "review"]


@pytest.mark.slow
def test_serve_exits_with_the_configuration_error_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, None)
    damage(home / "checkpoints.db")
    code, err = refused_start(DaemonProcess(home))
    assert "damaged" in err
    assert code == 2
