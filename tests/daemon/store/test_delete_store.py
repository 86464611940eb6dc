"""Deleting an ended task in the store: every table keyed by task ids loses the task's rows in
one transaction, a live task loses nothing, and of two racing deletions exactly one deletes.

The tables are found in the database file itself (every table with a `task_id` column), not
listed by hand: a table added later is covered by these tests, and must be by the deletion.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import TypeDecorator, create_engine
from sqlalchemy.sql import sqltypes
from sqlmodel import SQLModel

from daemon.store.store import TASK_DELETED, Store, TaskNotEnded, TaskRow


def _db(tmp_path: Path) -> Path:
    return tmp_path / "tierd.db"


def tables_with_task_id(db: Path) -> list[str]:
    """Every table of the database file that has a `task_id` column."""
    conn = sqlite3.connect(db)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sorted(
            n
            for n in names
            if "task_id" in {c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')}
        )
    finally:
        conn.close()


def rows_of(db: Path, task_id: str) -> dict[str, int]:
    """The task's rows in each table keyed by task ids, and its own row in `tasks`."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        found = {
            t: conn.execute(f'SELECT count(*) FROM "{t}" WHERE task_id = ?', (task_id,)).fetchone()[
                0
            ]
            for t in tables_with_task_id(db)
        }
        found["tasks"] = conn.execute(
            "SELECT count(*) FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()[0]
        return found
    finally:
        conn.close()


def _value(column: Any, task_id: str, n: int) -> Any:
    """A value of the column's type for a made-up row."""
    if column.name == "task_id":
        return task_id
    kind = column.type
    if isinstance(kind, TypeDecorator):  # sqlmodel's AutoString: a String underneath
        kind = kind.impl_instance
    if isinstance(kind, sqltypes.String):
        return f"{task_id}-{column.name}-{n}"  # unique, for string keys
    if isinstance(kind, sqltypes.Boolean):
        return False
    if isinstance(kind, sqltypes.Integer):
        return n
    if isinstance(kind, sqltypes.Float | sqltypes.Numeric):
        return float(n)
    raise AssertionError(f"a column of a type this test does not fill: {column!r}")


def fill_every_table(db: Path, task_id: str, per_table: int = 2) -> None:
    """`per_table` rows for `task_id` in every table the schema keys by task ids, whatever
    their columns: each required column gets a value of its type."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            for name in tables_with_task_id(db):
                table = SQLModel.metadata.tables[name]
                for n in range(per_table):
                    values = {
                        c.name: _value(c, task_id, n)
                        for c in table.columns
                        # An integer id is the database's to give.
                        if not (c.primary_key and isinstance(c.type, sqltypes.Integer))
                    }
                    conn.execute(table.insert().values(**values))
    finally:
        engine.dispose()


def _task(task_id: str, state: str, code: dict[str, Any] | None = None) -> TaskRow:
    return TaskRow(
        id=task_id,
        state=state,
        goal="a goal",
        created_at=1.0,
        updated_at=1.0,
        code_json=json.dumps(code) if code else None,
    )


async def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{_db(tmp_path)}")
    await store.open()
    return store


async def test_every_table_keyed_by_task_ids_loses_the_task_and_only_it(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task("tgone", "completed"))
    await store.create_task(_task("tstay", "completed"))
    await store.close()
    fill_every_table(_db(tmp_path), "tgone")
    fill_every_table(_db(tmp_path), "tstay")
    keyed = tables_with_task_id(_db(tmp_path))
    # The schema's tables keyed by task ids are all in the file (no table escapes the test).
    assert set(keyed) == {t.name for t in SQLModel.metadata.sorted_tables if "task_id" in t.c}
    assert {"streams", "events", "usage", "steps", "questions", "attachments"} <= set(keyed)
    before = rows_of(_db(tmp_path), "tgone")
    assert all(n >= 2 for t, n in before.items() if t != "tasks"), before

    store = await _store(tmp_path)
    gone = await store.delete_ended_task("tgone")
    await store.close()

    assert gone.state == "completed"
    # The answer counts what went: each table's rows (the task's creation event included).
    assert gone.rows == {**before, "tasks": 1}
    after = rows_of(_db(tmp_path), "tgone")
    # Nothing left but the one event that says the task was deleted.
    assert after == {**{t: 0 for t in keyed}, "events": 1, "tasks": 0}
    conn = sqlite3.connect(_db(tmp_path))
    (kind, data) = conn.execute(
        "SELECT type, data_json FROM events WHERE task_id='tgone'"
    ).fetchone()
    conn.close()
    assert kind == TASK_DELETED
    assert json.loads(data) == {"task_id": "tgone", "state": "completed", "rows": gone.rows}
    # The other task is untouched.
    # The other task, filled the same way, is untouched.
    assert rows_of(_db(tmp_path), "tstay") == before


async def test_a_live_task_is_refused_and_keeps_everything(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task("tlive", "running"))
    await store.close()
    fill_every_table(_db(tmp_path), "tlive")
    before = rows_of(_db(tmp_path), "tlive")
    store = await _store(tmp_path)
    with pytest.raises(TaskNotEnded) as refused:
        await store.delete_ended_task("tlive")
    assert refused.value.state == "running"
    with pytest.raises(KeyError):
        await store.delete_ended_task("tnobody")
    await store.close()
    assert rows_of(_db(tmp_path), "tlive") == before


async def test_of_two_racing_deletions_one_deletes_and_one_finds_it_gone(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task("trace", "failed"))
    results = await asyncio.gather(
        store.delete_ended_task("trace"), store.delete_ended_task("trace"), return_exceptions=True
    )
    await store.close()
    assert sorted(type(r).__name__ for r in results) == ["DeletedRows", "KeyError"]
    assert rows_of(_db(tmp_path), "trace")["events"] == 1  # one deletion, one event


async def test_a_code_task_leaves_its_repository_and_the_branch_that_is_yours(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    result = {"branch": "tierd/tmine/_result", "head": "abc"}
    await store.create_task(
        _task(
            "tmine",
            "completed",
            {"repo": "/r", "result": result, "applied": {"how": "branch", "head": "abc"}},
        )
    )
    await store.create_task(
        _task("tmerged", "completed", {"repo": "/r", "result": result, "applied": {"how": "merge"}})
    )
    await store.create_task(_task("ttext", "canceled"))
    seen: list[Any] = []
    store.add_listener(seen.append)
    for task_id in ("tmine", "tmerged", "ttext"):
        await store.delete_ended_task(task_id)
    deleted = await store.deleted_tasks()
    await store.close()
    assert deleted["tmine"]["code"] == {"repo": "/r", "kept_branch": "tierd/tmine/_result"}
    assert deleted["tmerged"]["code"] == {"repo": "/r", "kept_branch": None}
    assert "code" not in deleted["ttext"] and deleted["ttext"]["state"] == "canceled"
    # Each deletion was announced to the live listeners (the event feed) once committed.
    assert [(e.task_id, e.type) for e in seen] == [
        ("tmine", TASK_DELETED),
        ("tmerged", TASK_DELETED),
        ("ttext", TASK_DELETED),
    ]
