"""The checkpoint database: checked before any task runs on it, opened for the workflow.

LangGraph keeps each task's checkpoints in one SQLite file (`checkpoints.db` in the data
directory). A file that is not a database, or a damaged one, would otherwise let the daemon
start, accept tasks and fail every one with an internal error; so it is checked when the
engine starts (`check`) and again when the workflow opens it (`open_checkpoints`), and either
raises `CheckpointsDamaged` naming the file and what to do. Only the standard library's
sqlite3 here: the check runs before the heavy engine import has finished.

A deleted task's thread goes with it (`delete_thread`), through LangGraph's own
`adelete_thread` on a connection of its own: the service deletes without the workflow open.

A PostgreSQL store keeps the checkpoints in its own database instead (`checkpoints_pg`), so
that every daemon sharing it can resume any task: `Checkpoints` is then the store's URL.
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
from daemon.store.database import shared_store, store_location

__all__ = [
    "Checkpoints",
    "check",
    "checkpoints_for",
    "delete_thread",
    "location",
    "open_checkpoints",
]

#: Where the workflow's checkpoints are: a SQLite file, a PostgreSQL store's URL, or None (in
#: memory, for tests).
Checkpoints = Path | str | None


def checkpoints_for(store_url: str, sqlite_file: Path) -> Path | str:
    """A PostgreSQL store's own database (shared as the store is), else `sqlite_file`."""
    return store_url if shared_store(store_url) else sqlite_file


def location(where: Checkpoints) -> str:
    """The checkpoints' place for a message: the file, or the URL without its password."""
    if where is None:
        return "memory"
    return str(where) if isinstance(where, Path) else store_location(where)


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


async def check(where: Checkpoints) -> None:
    """Raise CheckpointsDamaged if the checkpoint file at `where` cannot be used (None, in
    memory, or on PostgreSQL: nothing to check)."""
    if isinstance(where, Path):
        await asyncio.to_thread(_check_sync, where)


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


async def delete_thread(where: Checkpoints, thread_id: str) -> bool:
    """Delete the checkpoints (and pending writes) of `thread_id`, a task's id, from `where`;
    whether it had any. A file that is not there yet has none."""
    if isinstance(where, str):
        pg = await asyncio.to_thread(importlib.import_module, f"{__package__}.checkpoints_pg")
        return bool(await pg.delete_pg_thread(where, thread_id))
    path = where
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
