"""A disk that fills under running tasks: they wait for room, go on, and never repeat a call.

In process, on the real runner, workflow and SQLite store, with every model call answered by
a script. SQLite's `max_page_count`, capped at the database's size, fails every growing write
with SQLITE_FULL ("database or disk is full") exactly as a full disk does; lifting the cap is
space coming back. A task accepted before the disk filled must neither crash nor stay stuck:
it continues once there is room, or, when the disk stays full past the runner's patience,
fails with that reason recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from support.scripted import ScriptedCaller

from daemon.engine.disk_full import RoomWait, store_full
from daemon.engine.runner import Runner
from daemon.engine.settings import shipped_task_defaults
from daemon.store.store import Store, StoreFull, TaskRow

#: Long answers: saving one needs new database pages, so a full disk refuses it.
BIG = "x" * 20_000
TERMINAL = {"completed", "failed", "canceled"}


class NoLimit:
    """A governor that always has a slot."""

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        yield

    def slot(self, task_id: str) -> Any:
        return self._slot()


class Disk:
    """The store's disk: full (capped at the database's size) or with room."""

    def __init__(self, store: Store) -> None:
        engine = store._engine
        assert engine is not None
        self.engine = engine
        self.limit = 1_073_741_823
        # Every checkout: the limit applies to the connection the store's next query uses.
        sa_event.listen(engine, "checkout", self._apply)

    def _apply(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={self.limit}")

    def fill(self) -> None:
        self.limit = 1  # SQLite keeps the database's current size: nothing can grow

    def free(self) -> None:
        self.limit = 1_073_741_823


def spec(stream_id: str) -> dict[str, Any]:
    return {
        "id": stream_id,
        "title": f"Stream {stream_id}",
        "job": f"Do {stream_id}.",
        "output_definition": f"The {stream_id} part.",
        "ownership": [f"{stream_id}/"],
        "depends_on": [],
    }


def script(**first: Any) -> ScriptedCaller:
    """Two streams and a merge, all with long answers; `first`: rules that win over these."""
    return ScriptedCaller(
        {
            **first,
            "plan:*": {
                "summary": "two parts " + BIG,
                "streams": [spec("a"), spec("b")],
                "merge_instruction": "Join.",
            },
            "exec:*": {"kind": "output", "output": "part " + BIG},
            "merge:*": "merged " + BIG,
        }
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await s.open()
    yield s
    await s.close()


async def accept_task(store: Store, task_id: str, **settings: Any) -> str:
    now = time.time()
    await store.create_task(
        TaskRow(
            id=task_id,
            state="queued",
            goal="Write the two parts",
            created_at=now,
            updated_at=now,
            settings_json=json.dumps({**shipped_task_defaults(), **settings}),
        )
    )
    return task_id


async def state_of(store: Store, task_id: str) -> str:
    row = await store.get_task(task_id)
    assert row is not None
    return row.state


async def until(predicate: Any, within_s: float = 30.0) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.02)


def waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waits for disk space" in r.getMessage()]


async def test_a_task_waits_while_the_disk_is_full_then_completes_without_repeating_a_call(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tierd")
    answered_into_a_full_disk = asyncio.Event()

    def fills_the_disk(call: Any) -> dict[str, Any]:
        # The disk fills while the model works: its answer comes back but cannot be saved.
        if not answered_into_a_full_disk.is_set():
            disk.fill()
            answered_into_a_full_disk.set()
        return {"kind": "output", "output": "part a " + BIG}

    model = script(**{"exec:a:*": fills_the_disk})
    runner = Runner(
        store,
        NoLimit(),  # type: ignore[arg-type]
        checkpoints=None,
        room=RoomWait(first_s=0.05, longest_s=0.2, patience_s=60),
        models=model.models,
    )
    disk = Disk(store)

    async def waited(times: int) -> None:
        async def enough() -> bool:
            return len(waits(caplog)) >= times

        await until(enough)

    try:
        task_id = await accept_task(store, "t-disk-full")
        disk.fill()  # accepted before the disk filled
        runner.start(task_id)
        await waited(2)
        # Full: the task neither crashed nor ended; it waits where it was.
        assert await state_of(store, task_id) in {"queued", "planning"}
        assert "the disk holding the task store" in waits(caplog)[0]
        disk.free()
        await asyncio.wait_for(answered_into_a_full_disk.wait(), 30)
        await waited(len(waits(caplog)) + 2)
        assert await state_of(store, task_id) not in TERMINAL
        calls_while_full = len(model.calls)
        await asyncio.sleep(0.5)
        assert len(model.calls) == calls_while_full  # no call is made again and again
        disk.free()

        async def ended() -> bool:
            return await state_of(store, task_id) in TERMINAL

        await until(ended)
    finally:
        await runner.stop()
    row = await store.get_task(task_id)
    assert row is not None and (row.state, row.error) == ("completed", None), row.error
    assert row.result == "merged " + BIG
    streams = {s.stream_id: s.output for s in await store.streams_of(task_id)}
    assert streams == {"a": "part a " + BIG, "b": "part " + BIG}
    # Every answer was paid for once: the one that could not be saved was held, saved later.
    repeated = {k: n for k, n in Counter(model.keys()).items() if n > 1}
    assert not repeated, repeated
    assert model.keys("exec:a:*") == ["exec:a:r0:a0"]
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]


async def test_a_disk_that_stays_full_fails_the_task_with_the_reason_once_it_can(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tierd")
    model = script()
    runner = Runner(
        store,
        NoLimit(),  # type: ignore[arg-type]
        checkpoints=None,
        room=RoomWait(first_s=0.05, longest_s=0.1, patience_s=0.3),
        models=model.models,
    )
    disk = Disk(store)
    try:
        # Its report shows its settings: with a long rule, recording the failure needs room.
        rules = {"rules.instructions": ["Be thorough. " + BIG]}
        task_id = await accept_task(store, "t-stays-full", **rules)
        disk.fill()
        runner.start(task_id)

        async def gave_up() -> bool:
            return any("failing it" in r.getMessage() for r in caplog.records)

        await until(gave_up)

        # Patience used up while nothing can be written: the failure waits for room too.
        async def tried_to_record() -> bool:
            return any("cannot record its failure" in r.getMessage() for r in caplog.records)

        await until(tried_to_record)
        assert await state_of(store, task_id) not in TERMINAL
        disk.free()

        async def ended() -> bool:
            return await state_of(store, task_id) in TERMINAL

        await until(ended)
    finally:
        await runner.stop()
    row = await store.get_task(task_id)
    assert row is not None and row.state == "failed"
    assert row.error is not None and row.error.startswith("the disk stayed full for over 0s")
    assert "database or disk is full" in row.error
    assert json.loads(row.report_json or "{}")["state"] == "failed"


def test_a_full_disk_is_recognised_through_wrappers_and_nothing_else_is() -> None:
    import sqlite3

    full = StoreFull("/x/tierd.db", "database or disk is full")
    assert store_full(full) is full
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("the checkpointer failed") from exc
    except RuntimeError as wrapped:
        found = store_full(wrapped)
    assert found is not None and "database or disk is full" in str(found)
    assert store_full(ExceptionGroup("streams", [ValueError("x"), full])) is full
    assert store_full(sqlite3.OperationalError("database is locked")) is None
    assert store_full(ValueError("database or disk is full")) is None


def test_the_pauses_grow_and_add_up_to_the_patience() -> None:
    pauses = list(RoomWait(first_s=1, longest_s=30, patience_s=300).delays())
    assert pauses[:6] == [1, 2, 4, 8, 16, 30] and set(pauses[6:]) == {30}
    assert sum(pauses) <= 300 < sum(pauses) + 30
