"""The store: durable rows, events with ever-increasing ids, schema versions and migration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.states import IllegalTransition
from daemon.store import SCHEMA_VERSION, SchemaTooNew, Store, TaskRow


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


async def test_wal_mode_and_version_recorded(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.create_task(_task())
    await store.close()
    import sqlite3

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == \
        str(SCHEMA_VERSION)
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
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    conn.close()


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
