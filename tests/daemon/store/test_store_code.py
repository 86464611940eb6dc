"""The store's code facts: a task's `code_json` merged key by key (`set_task_code`), a stream's
written whole through `upsert_stream`, and the v3 -> v4 migration that adds both columns."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from daemon.store.store import SCHEMA_VERSION, Store, TaskRow


def _task(task_id: str = "t1", code: dict[str, object] | None = None) -> TaskRow:
    return TaskRow(
        id=task_id,
        state="queued",
        goal="g",
        created_at=1.0,
        updated_at=1.0,
        code_json=None if code is None else json.dumps(code),
    )


async def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    return store


async def test_set_task_code_merges_keys_into_what_submit_wrote(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    submitted = {"repo": "/src/app", "base": "HEAD", "base_commit": "a" * 40}
    await store.create_task(_task(code=submitted))
    await store.set_task_code("t1", {"branches": ["tierd/t1/s1"]})
    await store.set_task_code("t1", {"cleanup": {"removed": 2}, "branches": ["tierd/t1"]})
    row = await store.get_task("t1")
    assert row is not None
    assert json.loads(row.code_json or "") == {
        **submitted,
        "branches": ["tierd/t1"],  # a key written again is replaced
        "cleanup": {"removed": 2},
    }
    # Not a change of state: a watcher compares updated_at with its state events.
    assert row.updated_at == 1.0
    await store.close()


async def test_set_task_code_on_a_text_task_starts_an_object(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task())
    await store.set_task_code("t1", {"k": 1})
    row = await store.get_task("t1")
    assert row is not None and json.loads(row.code_json or "") == {"k": 1}
    await store.close()


async def test_concurrent_merges_keep_every_key(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task(code={}))
    await asyncio.gather(*(store.set_task_code("t1", {f"k{i}": i}) for i in range(20)))
    row = await store.get_task("t1")
    assert row is not None and json.loads(row.code_json or "") == {f"k{i}": i for i in range(20)}
    await store.close()


async def test_set_task_code_refuses_an_unknown_task_and_what_is_not_json(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task(code={"repo": "/r"}))
    with pytest.raises(KeyError):
        await store.set_task_code("nope", {"k": 1})
    with pytest.raises(TypeError):
        await store.set_task_code("t1", {"k": object()})
    with pytest.raises(TypeError):
        await store.set_task_code("t1", ["not", "a", "dict"])  # type: ignore[arg-type]
    row = await store.get_task("t1")
    assert row is not None and json.loads(row.code_json or "") == {"repo": "/r"}
    await store.close()


async def test_upsert_stream_takes_code_json_as_a_field(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task())
    first = {"branch": "tierd/t1/s1", "worktree": "/w/s1"}
    await store.upsert_stream("t1", "s1", title="one", state="running", code_json=json.dumps(first))
    later = {**first, "files": ["a.py"], "insertions": 3, "deletions": 0, "steps": 2}
    await store.upsert_stream("t1", "s1", code_json=json.dumps(later))
    await store.upsert_stream("t1", "s2", title="two")
    s1, s2 = await store.streams_of("t1")
    assert json.loads(s1.code_json or "") == later and s1.title == "one"
    assert s2.code_json is None
    await store.close()


async def test_a_migration_stopped_half_way_is_finished_at_the_next_start(tmp_path: Path) -> None:
    """The v3 -> v4 step adds two columns; a crash after the first (the version still 3) must
    not make the next start fail on a column that is already there."""
    db = tmp_path / "db.sqlite"
    store = await _store(tmp_path)
    await store.create_task(_task("old"))
    await store.close()
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE streams DROP COLUMN code_json")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()

    store = await _store(tmp_path)
    await store.upsert_stream("old", "s1", code_json='{"branch": "b"}')
    (stream,) = await store.streams_of("old")
    assert stream.code_json == '{"branch": "b"}'
    await store.close()
    conn = sqlite3.connect(db)
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    conn.close()
    assert version == str(SCHEMA_VERSION)


async def test_code_tasks_are_the_tasks_with_code_facts_in_any_state(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.create_task(_task("t1", code={"repo": "/a"}))
    await store.create_task(_task("t2"))
    await store.create_task(_task("t3", code={"repo": "/b"}))
    await store.transition("t3", "canceled")
    await store.create_task(_task("t4"))
    await store.set_task_code("t4", {"repo": "/c"})  # facts written later count too
    assert [r.id for r in await store.code_tasks()] == ["t1", "t3", "t4"]
    assert [r.state for r in await store.code_tasks()] == ["queued", "canceled", "queued"]
    await store.close()
