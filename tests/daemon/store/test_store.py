"""The store: durable rows, events with ever-increasing ids, schema versions and migration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.store.states import IllegalTransition
from daemon.store.store import SCHEMA_VERSION, SchemaTooNew, Store, TaskRow


def _task(task_id: str = "t1") -> TaskRow:
    now = time.time()
    return TaskRow(id=task_id, state="queued", goal="g", created_at=now, updated_at=now)


async def test_state_change_and_event_are_written_together(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    await store.create_task(_task())
    previous, ev = await store.transition("t1", "planning")
    assert previous == "queued"
    assert ev is not None and ev.data == {"state": "planning", "previous": "queued"}
    events = await store.events_after(0, "t1")
    assert [e["data"]["state"] for e in events] == ["queued", "planning"]
    assert events[0]["id"] < events[1]["id"]
    with pytest.raises(IllegalTransition):
        await store.transition("t1", "completed")  # planning cannot jump to completed
    row = await store.get_task("t1")
    assert row is not None and row.state == "planning"
    assert len(await store.events_after(0, "t1")) == 2  # the refused move left no event
    await store.close()


async def test_a_write_whose_caller_is_cancelled_still_announces_its_event(tmp_path: Path) -> None:
    # A task cancelled while its final state is being committed: the commit happens, so the
    # listeners (event feed, active-task count) must hear of it, or they drift from the rows.
    import asyncio
    import sqlite3

    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.create_task(_task())
    heard: list[str] = []
    store.add_listener(lambda ev: heard.append(ev.data.get("state", "")))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the store's write now waits for this lock
    writing = asyncio.create_task(store.transition("t1", "canceled", reason="by client"))
    await asyncio.sleep(0.5)  # the store thread is inside the write, waiting for the lock
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    blocker.execute("ROLLBACK")
    blocker.close()
    row = None
    for _ in range(100):  # the write goes on in the store's thread and commits
        row = await store.get_task("t1")
        if row is not None and row.state == "canceled":
            break
        await asyncio.sleep(0.05)
    assert row is not None and row.state == "canceled"
    assert "canceled" in heard
    await store.close()


async def test_wal_mode_and_version_recorded(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.create_task(_task())
    await store.close()
    import sqlite3

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.close()


async def test_older_database_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.create_task(_task("old"))
    # Make it look like a version-1 database: no step memo, no questions table.
    await store.execute_raw("DROP TABLE steps")
    await store.execute_raw("DROP TABLE questions")
    await store.execute_raw("UPDATE meta SET value='1' WHERE key='schema_version'")
    await store.close()

    store = Store(f"sqlite:///{db}")
    await store.open()
    assert (await store.get_task("old")) is not None
    await store.put_step("old", "k", {"v": 1})
    assert await store.get_step("old", "k") == {"v": 1}
    await store.close()
    import sqlite3

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.close()


async def _make_v2_database(db: Path) -> None:
    """A database as tierd's schema version 2 left it: no tasks.idempotency_key, two tasks."""
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.execute_raw("DROP INDEX ix_tasks_idempotency_key")
    await store.execute_raw("ALTER TABLE tasks DROP COLUMN idempotency_key")
    await store.execute_raw("UPDATE meta SET value='2' WHERE key='schema_version'")
    await store.execute_raw(
        "INSERT INTO tasks (id, state, goal, context, options_json, created_at, updated_at, "
        "result) VALUES ('t-old-1', 'completed', 'old goal 1', '', '{}', 1, 2, 'the result'), "
        "('t-old-2', 'running', 'old goal 2', 'ctx', '{}', 3, 4, NULL)"
    )
    await store.close()


async def test_v2_database_gains_idempotency_keys_and_keeps_its_tasks(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    await _make_v2_database(db)
    import sqlite3

    conn = sqlite3.connect(db)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    conn.close()
    assert "idempotency_key" not in columns and "goal" in columns
    store = Store(f"sqlite:///{db}")
    await store.open()
    old = await store.get_task("t-old-1")
    assert old is not None and old.result == "the result" and old.idempotency_key is None
    assert {r.id for r in await store.list_tasks(None, 10, None)} == {"t-old-1", "t-old-2"}
    assert await store.nonterminal_task_ids() == ["t-old-2"]
    # The migrated column is unique: the second task with key k is not created.
    first = _task("t-new-1")
    first.idempotency_key = "k"
    row, created = await store.create_task_once(first)
    assert created and row.id == "t-new-1"
    second = _task("t-new-2")
    second.idempotency_key = "k"
    row, created = await store.create_task_once(second)
    assert not created and row.id == "t-new-1"
    assert await store.get_task("t-new-2") is None
    assert (await store.task_by_key("k")) is not None
    await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    with pytest.raises(sqlite3.IntegrityError):  # the constraint, not only the service's check
        conn.execute("UPDATE tasks SET idempotency_key = 'k' WHERE id = 't-old-1'")
    conn.close()
    # Opening again is a no-op: the migration is not repeated.
    store = Store(f"sqlite:///{db}")
    await store.open()
    assert (await store.get_task("t-old-2")) is not None
    await store.close()


async def test_unique_key_race_lost_in_the_database_returns_the_winner(tmp_path: Path) -> None:
    """Another process sharing the database may insert the key between the store's look-up
    and its insert: the unique index refuses the second row and the store answers the first
    (nothing of the loser is kept, not even its event)."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()

    def other_writer(session: Session, *_: object) -> None:
        # Runs after the look-up found no task with key k, just before the insert.
        if any(getattr(o, "id", None) == "t-loser" for o in session.new):
            conn = sqlite3.connect(db)
            conn.execute(
                "INSERT INTO tasks (id, state, goal, context, options_json, "
                "created_at, updated_at, idempotency_key) "
                "VALUES ('t-winner', 'queued', 'g', '', '{}', 0, 0, 'k')"
            )
            conn.commit()
            conn.close()

    loser = _task("t-loser")
    loser.idempotency_key = "k"
    event.listen(Session, "before_flush", other_writer)
    try:
        row, created = await store.create_task_once(loser)
    finally:
        event.remove(Session, "before_flush", other_writer)
    assert not created and row.id == "t-winner"
    assert await store.get_task("t-loser") is None
    assert await store.events_after(0, "t-loser") == []
    await store.close()


async def test_newer_database_is_refused_with_a_message(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.execute_raw("UPDATE meta SET value='99' WHERE key='schema_version'")
    await store.close()
    store = Store(f"sqlite:///{db}")
    with pytest.raises(SchemaTooNew, match="version 99, newer than this tierd"):
        await store.open()
    await store.close()


async def test_list_pages_by_cursor(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    for i in range(5):
        await store.create_task(_task(f"t{i}"))
    first = await store.list_tasks(None, 2, None)
    second = await store.list_tasks(None, 2, first[-1].id)
    third = await store.list_tasks(None, 2, second[-1].id)
    ids = [r.id for r in first + second + third]
    assert ids == ["t4", "t3", "t2", "t1", "t0"]
    await store.close()


async def test_a_listener_that_fails_does_not_keep_the_event_from_the_others(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    heard: list[int] = []

    def broken(_event: object) -> None:
        raise RuntimeError("a listener's bug")

    store.add_listener(broken)
    store.add_listener(lambda event: heard.append(event.id))
    await store.open()
    try:
        first = await store.append_event(None, "governor.limit", {})
        second = await store.append_event(None, "governor.limit", {})
        assert heard == [first.id, second.id]
    finally:
        await store.close()
