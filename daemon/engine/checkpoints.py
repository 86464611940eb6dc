"""The checkpoint database: checked before any task runs on it, opened for the workflow.

LangGraph keeps each task's checkpoints in one SQLite file (`checkpoints.db` in the data
directory). A file that is not a database, or a damaged one, would otherwise let the daemon
start, accept tasks and fail every one with an internal error; so it is checked when the
engine starts (`check`) and again when the workflow opens it (`open_checkpoints`), and either
raises `CheckpointsDamaged` naming the file and what to do. Only the standard library's
sqlite3 here: the check runs before the heavy engine import has finished.

A deleted task's thread goes with it (`delete_thread`), through LangGraph's own
`adelete_thread` on a connection of its own: the service deletes without the workflow open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sqlite3
from pathlib import Path

import aiosqlite

from daemon.engine.disk_full import store_full
from daemon.engine.errors import CheckpointsDamaged

__all__ = ["check", "delete_thread", "open_checkpoints"]

#: Problems quick_check lists in a message, at most.
SHOWN_PROBLEMS = 3


def _check_sync(path: Path) -> None:
    if not path.exists():
        return  # a first start: LangGraph creates it
    try:
        # Not read-only: SQLite may need to replay the WAL a crash left behind.
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            # Reads every page once (fast: the file holds checkpoints, not the task store),
            # so damage deep in the file is found now, not mid-task.
            rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if store_full(exc) is not None:
            raise  # a full or failing disk is not the file's fault
        raise CheckpointsDamaged(str(path), str(exc)) from exc
    problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
    if problems:
        raise CheckpointsDamaged(str(path), "; ".join(problems[:SHOWN_PROBLEMS]))


async def check(path: Path | None) -> None:
    """Raise CheckpointsDamaged if the checkpoint file at `path` cannot be used (None: the
    checkpoints live in memory, nothing to check)."""
    if path is not None:
        await asyncio.to_thread(_check_sync, path)


async def open_checkpoints(path: Path | None) -> aiosqlite.Connection:
    """A connection to the checkpoint database (None: in memory), checked first."""
    await check(path)
    conn = await aiosqlite.connect(str(path) if path else ":memory:")
    # As the store's (daemon.store.database): in WAL mode (the saver's setup turns it on)
    # NORMAL loses nothing but to a power cut, and spares every checkpoint an fsync, which is
    # on the way of each step of every task.
    await conn.execute("PRAGMA synchronous=NORMAL")
    return conn


#: LangGraph's SQLite checkpointer: imported when a thread is deleted, off the event loop.
_SAVER_MODULE = "langgraph.checkpoint.sqlite.aio"


async def delete_thread(path: Path | None, thread_id: str) -> bool:
    """Delete the checkpoints (and pending writes) of `thread_id`, a task's id, from the file
    at `path`; whether it had any. A file that is not there yet has none."""
    if path is None or not await asyncio.to_thread(path.exists):
        return False
    module = await asyncio.to_thread(importlib.import_module, _SAVER_MODULE)
    async with aiosqlite.connect(str(path), timeout=30) as conn:
        found = await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
            "('checkpoints', 'writes')"
        )
        if len(list(found)) < 2:
            return False  # never set up: no thread in it
        had = await conn.execute_fetchall(
            "SELECT 1 FROM checkpoints WHERE thread_id = ? UNION ALL "
            "SELECT 1 FROM writes WHERE thread_id = ? LIMIT 1",
            (thread_id, thread_id),
        )
        await module.AsyncSqliteSaver(conn).adelete_thread(thread_id)
    return bool(list(had))
