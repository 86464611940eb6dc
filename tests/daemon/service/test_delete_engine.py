"""The engine's side of deleting a task: its checkpoint thread goes (and only its), and the
deletion waits out the runner's last steps on a task that has just ended, found by the name
the runner gives each task's run."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from daemon.engine.checkpoints import delete_thread
from daemon.engine.housekeeping import drive_finished, drive_name
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


async def test_a_deletion_waits_for_the_run_of_its_task_only() -> None:
    finished: list[str] = []

    async def last_steps() -> None:
        await asyncio.sleep(0.3)
        finished.append("tA")

    run = asyncio.create_task(last_steps(), name=drive_name("tA"))
    other = asyncio.create_task(asyncio.sleep(60), name=drive_name("tB"))
    try:
        await drive_finished("tA")
        assert finished == ["tA"] and run.done() and not other.done()
        await asyncio.wait_for(drive_finished("tnobody"), 5)  # no run: at once
    finally:
        other.cancel()


async def test_the_runner_names_each_run_as_the_deletion_looks_for_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    runner = Runner(store, None, checkpoints=None)  # type: ignore[arg-type]
    try:
        runner.start("tnamed")
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert drive_name("tnamed") in names
    finally:
        await runner.stop()
        await store.close()
