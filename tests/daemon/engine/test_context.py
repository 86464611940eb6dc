"""A run reads the step memo only for keys saved before it began (or by its gateway since)."""

from __future__ import annotations

import time
from pathlib import Path

from daemon.engine.context import TaskContext
from daemon.engine.settings import TaskSettings
from daemon.store.store import Store, TaskRow


async def _unused_caller(*_args: object, **_kwargs: object) -> object:
    raise AssertionError("no model call here")


async def test_a_stream_marker_not_saved_when_the_run_began_is_not_read(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    try:
        now = time.time()
        row = TaskRow(id="t1", state="running", goal="g", created_at=now, updated_at=now)
        await store.create_task(row)
        await store.put_step("t1", "stream:a", {"output": "A"})
        await store.put_step("t1", "stream:b", {"output": "B"})
        settings = TaskSettings.from_json(None)
        known = TaskContext.of(store, row, settings, _unused_caller, saved_keys={"stream:a"})
        assert await known.saved_step("stream:a") == {"output": "A"}
        # Written after the run began (only this run could have): not read back.
        assert await known.saved_step("stream:b") is None
        unknown = TaskContext.of(store, row, settings, _unused_caller)
        assert await unknown.saved_step("stream:b") == {"output": "B"}
        assert await unknown.saved_step("stream:c") is None
    finally:
        await store.close()
