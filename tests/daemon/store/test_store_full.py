"""A full disk: every store write that fails for want of space raises `StoreFull` naming the
store, writes nothing, announces nothing, and works again once there is room.

SQLite's `max_page_count` caps the database at its current size, which fails a growing write
with SQLITE_FULL ("database or disk is full") exactly as a full disk does.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError

from daemon.store.errors import as_store_full
from daemon.store.store import Store, StoreFull, TaskRow, UsageRow


def _task(task_id: str, goal: str = "g") -> TaskRow:
    now = time.time()
    return TaskRow(id=task_id, state="queued", goal=goal, created_at=now, updated_at=now)


def _cap_pages(store: Store, extra: int | None) -> None:
    """Cap the database at its size now plus `extra` pages (None: no cap), on every connection."""
    engine = store._engine
    assert engine is not None
    with engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    limit = 1_073_741_823 if extra is None else pages + extra

    def cap(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={limit}")

    sa_event.listen(engine, "connect", cap)
    engine.dispose()  # every connection from now on is capped


async def test_a_write_on_a_full_disk_is_store_full_and_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "tierd.db"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.create_task(_task("t0"))
    heard: list[Any] = []
    store.add_listener(heard.append)
    _cap_pages(store, 0)
    big = "x" * 200_000  # needs new pages
    with pytest.raises(StoreFull) as full:
        await store.create_task(_task("t1", big))
    message = str(full.value)
    assert "full" in message and str(db) in message and "database or disk is full" in message
    assert isinstance(full.value.__cause__, OperationalError)  # kept for the log, not shown
    assert full.value.where == str(db)
    for write in (
        store.update_task("t0", result=big, event=("task.note", {"n": 1})),
        store.upsert_stream("t0", "s1", output=big, step=("exec:s1:r0:a0", {"o": big})),
        store.put_step("t0", "k", {"v": big}),
        store.append_event("t0", "task.note", {"big": big}),
        store.record_usage(UsageRow(task_id="t0", role="executor", purpose=big, model="m")),
    ):
        with pytest.raises(StoreFull):
            await write
    # Nothing half-written, nothing announced; reads still work.
    assert await store.get_task("t1") is None
    assert [e["data"].get("state") for e in await store.events_after(0)] == ["queued"]
    assert await store.get_step("t0", "exec:s1:r0:a0") is None
    assert heard == []
    # Space returns: the same write succeeds.
    _cap_pages(store, None)
    await store.create_task(_task("t1", big))
    assert (await store.get_task("t1")) is not None and len(heard) == 1
    await store.close()


async def test_a_state_change_on_a_full_disk_keeps_the_old_state(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    await store.create_task(_task("t0"))
    _cap_pages(store, 0)
    with pytest.raises(StoreFull):
        await store.transition("t0", "failed", reason="r" * 200_000, error="e" * 200_000)
    row = await store.get_task("t0")
    assert row is not None and row.state == "queued"
    _cap_pages(store, None)
    await store.transition("t0", "failed", reason="disk was full", error="disk was full")
    row = await store.get_task("t0")
    assert row is not None and row.state == "failed"
    await store.close()


def _sqlite_error(message: str, code: int | None) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    if code is not None:
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


class _PgError(Exception):
    sqlstate = "53100"


@pytest.mark.parametrize(
    "exc",
    [
        _sqlite_error("database or disk is full", 13),
        _sqlite_error("disk I/O error", 10 | (3 << 8)),  # SQLITE_IOERR_WRITE
        _sqlite_error("database or disk is full", None),
        OperationalError("INSERT ...", {}, _sqlite_error("disk I/O error", 10)),
        OperationalError("INSERT ...", {}, _PgError("could not extend file: No space left")),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_a_full_or_failing_disk_is_recognised(exc: BaseException) -> None:
    full = as_store_full(exc, "/data/tierd.db")
    assert isinstance(full, StoreFull)
    assert full.where == "/data/tierd.db" and "/data/tierd.db" in str(full)


@pytest.mark.parametrize(
    "exc",
    [
        _sqlite_error("database is locked", 5),
        _sqlite_error("no such table: tasks", 1),
        OperationalError("SELECT ...", {}, _sqlite_error("database is locked", 5)),
        IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        OSError(errno.EACCES, "Permission denied"),
        KeyError("t1"),
    ],
)
def test_other_errors_are_left_alone(exc: BaseException) -> None:
    assert as_store_full(exc, "/data/tierd.db") is None


async def test_other_store_errors_still_reach_the_caller_as_they_were(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    with pytest.raises(KeyError):
        await store.transition("nope", "planning")
    await store.close()
