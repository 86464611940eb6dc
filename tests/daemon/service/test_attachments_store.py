"""Attachments in the store and in the task's folder: written with their task in one
transaction, read back in order, removed with the task's data; the v4 -> v5 migration that
adds their table; and the keeper that ties files and rows together."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from daemon.service.attachments import files
from daemon.service.attachments.keeper import AttachmentKeeper
from daemon.service.attachments.pdf import encode_png
from daemon.service.attachments.prepare import (
    AttachmentLimits,
    Prepared,
    decode_attachments,
    read_attachments,
)
from daemon.service.params import AttachmentParams
from daemon.store.store import SCHEMA_VERSION, AttachmentRow, Store, TaskRow

LIMITS = AttachmentLimits(20, 1 << 20, 1 << 21, 10, 2, 50, 10, 100, 10_000)


def _task(task_id: str) -> TaskRow:
    return TaskRow(id=task_id, state="queued", goal="g", created_at=1.0, updated_at=1.0)


def _prepared(*names: str) -> list[Prepared]:
    image = encode_png(2, 2, 6, bytes(12))
    items = [
        AttachmentParams(name=n, data=base64.b64encode(image + n.encode()).decode()) for n in names
    ]
    return read_attachments(decode_attachments(items, LIMITS), LIMITS)


async def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    return store


async def test_a_task_and_its_attachments_are_stored_together(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    rows = files.write_task_files(tmp_path, "t1", _prepared("b.png", "a.png"))
    await store.create_task(_task("t1"), rows)
    await store.create_task(_task("t2"))
    stored = await store.attachments_of("t1")
    assert [(a.position, a.name, a.media_type, a.kind) for a in stored] == [
        (0, "b.png", "image/png", "image"),
        (1, "a.png", "image/png", "image"),
    ]
    assert await store.attachments_of("t2") == []
    assert await store.known_task_ids(["t1", "t2", "t9"]) == {"t1", "t2"}
    assert await store.delete_attachments("t1") == 2
    assert await store.attachments_of("t1") == []
    await store.close()


async def test_a_row_for_a_task_not_stored_fails_the_whole_creation(tmp_path: Path) -> None:
    """Foreign keys are on: a row can only belong to a task in the store, and the task is not
    created without its rows."""
    store = await _store(tmp_path)
    (row,) = files.write_task_files(tmp_path, "t1", _prepared("a.png"))
    stray = AttachmentRow(**{**row.model_dump(), "id": None, "task_id": "nope"})
    with pytest.raises(Exception, match="FOREIGN KEY"):
        await store.create_task(_task("t3"), [stray])
    assert await store.get_task("t3") is None
    assert await store.attachments_of("nope") == []
    await store.close()


async def test_a_version_4_database_gets_the_attachments_table(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = await _store(tmp_path)
    await store.create_task(_task("old"))
    await store.close()
    # Back to version 4: the table the migration adds is not there yet.
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE attachments")
    conn.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    conn.commit()
    conn.close()

    store = await _store(tmp_path)
    assert await store.attachments_of("old") == []
    rows = files.write_task_files(tmp_path, "new", _prepared("a.png"))
    await store.create_task(_task("new"), rows)
    assert [a.name for a in await store.attachments_of("new")] == ["a.png"]
    await store.close()
    conn = sqlite3.connect(db)
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    columns = [r[1] for r in conn.execute("PRAGMA table_info(attachments)")]
    conn.close()
    assert version == str(SCHEMA_VERSION)  # migrated all the way up
    assert columns[:8] == [
        "id",
        "task_id",
        "position",
        "name",
        "media_type",
        "kind",
        "sha256",
        "size",
    ]


async def test_the_keeper_removes_a_folder_whose_task_was_not_created(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    keeper = AttachmentKeeper(store, tmp_path)
    with pytest.raises(RuntimeError):
        async with keeper.keeping("t1", _prepared("a.png")) as kept:
            assert kept.rows and files.task_folder(tmp_path, "t1").is_dir()
            raise RuntimeError("the store refused the task")
    assert files.folders(tmp_path) == []
    async with keeper.keeping("t2", _prepared("a.png")) as kept:
        kept.discard()  # a duplicate found at the last moment
    assert files.folders(tmp_path) == []
    await store.close()


async def test_the_keeper_sweeps_once_and_removes_a_tasks_data(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    # What a crash left: a folder written, its task never stored.
    files.write_task_files(tmp_path, "t-crashed", _prepared("a.png"))
    keeper = AttachmentKeeper(store, tmp_path)
    async with keeper.keeping("t1", _prepared("a.png", "b.png")) as kept:
        await store.create_task(_task("t1"), kept.rows)
    assert files.folders(tmp_path) == ["t1"]
    assert await keeper.remove("t1") is True
    assert files.folders(tmp_path) == [] and await store.attachments_of("t1") == []
    assert await store.get_task("t1") is not None  # the task's record stays; its files go
    assert await keeper.remove("t1") is False
    await store.close()
