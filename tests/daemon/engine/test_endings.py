"""Endings that race: a task reaches one final state, and whoever comes second is told no.

Two cancels at once, a cancel while the task completes on its own, a failure while the task
is being canceled: the engine's finalize path must never raise `IllegalTransition` to its
caller (the service would answer it as an internal error), and a task that reached a final
state keeps it, with its result and report. In process, on the real store and runner; the
same races through a real daemon's API are `tests/daemon/service/test_races.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon.engine import ending
from daemon.engine.runner import Runner
from daemon.engine.settings import shipped_task_defaults
from daemon.store.states import TaskState
from daemon.store.store import Store, TaskRow


class NoLimit:
    """A governor that always has a slot."""

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        yield

    def slot(self, task_id: str) -> Any:
        return self._slot()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def runner(store: Store) -> AsyncIterator[Runner]:
    r = Runner(store, NoLimit(), checkpoints=None)  # type: ignore[arg-type]
    yield r
    await r.stop()


async def live_task(store: Store, task_id: str, state: str = "running") -> str:
    now = time.time()
    row = TaskRow(
        id=task_id,
        state="queued",
        goal="Write the launch note",
        created_at=now,
        updated_at=now,
        settings_json=json.dumps(shipped_task_defaults()),
    )
    await store.create_task(row)
    path = {"planning": ["planning"], "running": ["planning", "running"]}
    path["merging"] = [*path["running"], "merging"]
    for step in path[state]:
        await store.transition(task_id, step)
    return task_id


async def states_of(store: Store, task_id: str) -> list[str]:
    events = await store.events_after(0, task_id, limit=1000)
    return [e["data"]["state"] for e in events if e["type"] == "task.state"]


def all_arrive_first(store: Store, monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Hold every `transition` until `parties` of them are waiting: each racer has read the
    task as live before any of them writes, the worst interleaving, every time."""
    barrier = asyncio.Barrier(parties)
    transition = store.transition

    async def held(*args: Any, **kw: Any) -> Any:
        await barrier.wait()
        return await transition(*args, **kw)

    monkeypatch.setattr(store, "transition", held)


async def test_two_cancels_at_once_end_the_task_once_and_raise_nothing(
    store: Store, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await live_task(store, "t-two-cancels")
    all_arrive_first(store, monkeypatch, 2)
    await asyncio.gather(runner.cancel(task_id), runner.cancel(task_id))  # no IllegalTransition
    row = await store.get_task(task_id)
    assert row is not None and row.state == "canceled"
    assert (await states_of(store, task_id)).count("canceled") == 1


async def test_a_cancel_racing_the_task_completing_leaves_it_completed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await live_task(store, "t-completes", state="merging")
    report = ending.partial_report

    async def completes_meanwhile(*args: Any, **kw: Any) -> dict[str, Any]:
        # The workflow's last write lands while the cancellation builds its report.
        await store.transition(task_id, TaskState.completed, result="THE RESULT")
        return await report(*args, **kw)

    monkeypatch.setattr(ending, "partial_report", completes_meanwhile)
    ended = await ending.finalize(store, task_id, TaskState.canceled, "canceled by client")
    assert ended is False
    row = await store.get_task(task_id)
    assert row is not None
    assert (row.state, row.result, row.error) == ("completed", "THE RESULT", None)
    assert await states_of(store, task_id) == [
        "queued",
        "planning",
        "running",
        "merging",
        "completed",
    ]


async def test_a_failure_racing_a_cancel_leaves_it_canceled_and_asks_no_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await live_task(store, "t-fail-vs-cancel")
    all_arrive_first(store, monkeypatch, 2)
    canceled, failed = await asyncio.gather(
        ending.finalize(store, task_id, TaskState.canceled, "canceled by client"),
        ending.fail_task(store, task_id, "stream s01 failed"),
    )
    assert (canceled, failed) == (True, False)
    row = await store.get_task(task_id)
    assert row is not None and (row.state, row.error) == ("canceled", None)
    events = await store.events_after(0, task_id, limit=1000)
    assert not [e for e in events if e["type"] == "attention"]  # nobody is told it failed
    assert json.loads(row.report_json or "{}")["state"] == "canceled"


async def test_ending_a_task_that_ended_already_changes_nothing(
    store: Store, runner: Runner
) -> None:
    task_id = await live_task(store, "t-ended")
    await runner.cancel(task_id)
    before = await store.get_task(task_id)
    await runner.cancel(task_id)
    assert await ending.fail_task(store, task_id, "too late") is False
    after = await store.get_task(task_id)
    assert before is not None and after is not None
    assert (after.state, after.report_json, after.updated_at) == (
        "canceled",
        before.report_json,
        before.updated_at,
    )
