"""The engine's side of deleting a task: its checkpoint thread goes (and only its), and the
deletion waits out the runner's last steps on a task that has just ended (`Runner.settled`)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from daemon.engine.checkpoints import delete_thread
from daemon.engine.runner import Runner
from daemon.store.store import Store


def thread_rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        found: dict[str, int] = {}
        for table in ("checkpoints", "writes"):
            for thread, n in conn.execute(
                f"SELECT thread_id, count(*) FROM {table} GROUP BY thread_id"
            ):
                found[thread] = found.get(thread, 0) + n
        return found
    finally:
        conn.close()


async def test_a_tasks_checkpoint_thread_goes_and_no_other(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    assert await delete_thread(path, "tA") is False
    assert not path.exists()  # a file not there yet is not made
    async with aiosqlite.connect(str(path)) as conn:
        await AsyncSqliteSaver(conn).setup()
        for thread in ("tA", "tB"):
            await conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, "
                "checkpoint, metadata) VALUES (?, '', ?, 'json', x'00', x'00')",
                (thread, f"{thread}-1"),
            )
            await conn.execute(
                "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
                "channel, type, value) VALUES (?, '', ?, 'x', 0, 'c', 'json', x'00')",
                (thread, f"{thread}-1"),
            )
        await conn.commit()
    assert thread_rows(path) == {"tA": 2, "tB": 2}
    assert await delete_thread(path, "tA") is True
    assert thread_rows(path) == {"tB": 2}
    assert await delete_thread(path, "tA") is False


async def test_settled_waits_for_the_run_of_its_task_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    runner = Runner(store, None, checkpoints=None)  # type: ignore[arg-type]
    release = {"tA": asyncio.Event(), "tB": asyncio.Event()}
    finished: list[str] = []

    async def last_steps(task_id: str, new: bool = False) -> None:
        # Stands in for a workflow's last steps after its final state (checkpoint, clean-up):
        # the runner's own bookkeeping of runs is what is under test.
        await release[task_id].wait()
        finished.append(task_id)

    runner._drive = last_steps  # type: ignore[method-assign]
    try:
        runner.start("tA")
        runner.start("tB")
        waiting = asyncio.create_task(runner.settled("tA"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # tA still runs
        release["tA"].set()
        await asyncio.wait_for(waiting, 5)
        assert finished == ["tA"]  # tB's run was not waited for
        await asyncio.wait_for(runner.settled("tnobody"), 5)  # no run: at once
        release["tB"].set()
        await asyncio.wait_for(runner.settled("tB"), 5)
        assert finished == ["tA", "tB"]
    finally:
        await runner.stop()
        await store.close()
