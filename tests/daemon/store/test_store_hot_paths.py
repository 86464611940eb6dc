"""The store's hot paths (Core statements, `daemon.store.statements`): what the ORM did for
them (defaults on insert, one transaction per write, clear errors) still holds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.store.store import AttachmentRow, Store, TaskRow, UsageRow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await s.open()
    now = time.time()
    await s.create_task(TaskRow(id="t1", state="queued", goal="g", created_at=now, updated_at=now))
    yield s
    await s.close()


async def test_new_streams_get_the_tables_defaults_and_keep_their_order(store: Store) -> None:
    await store.add_streams("t1", [{"stream_id": "b", "title": "B"}, {"stream_id": "a"}])
    await store.upsert_stream("t1", "c", state="running")  # created by an update
    rows = await store.streams_of("t1")
    assert [r.stream_id for r in rows] == ["b", "a", "c"]
    b, a, c = rows
    assert (b.title, b.state, b.spec_json, b.rounds, b.output) == ("B", "pending", "{}", 0, None)
    assert (a.title, a.depth, a.parent_id) == ("", 0, None)
    assert c.state == "running" and c.id is not None and c.id > a.id  # type: ignore[operator]


async def test_a_stream_update_its_memo_and_event_commit_together(store: Store) -> None:
    await store.add_streams("t1", [{"stream_id": "a"}])
    ev = await store.upsert_stream(
        "t1",
        "a",
        step=("exec:a:r0", {"output": "done"}),
        event=("stream.state", {"stream_id": "a", "state": "accepted"}),
        state="accepted",
        output="done",
    )
    assert ev is not None and ev.type == "stream.state" and ev.task_id == "t1"
    assert await store.get_step("t1", "exec:a:r0") == {"output": "done"}
    [row] = await store.streams_of("t1")
    assert (row.state, row.output) == ("accepted", "done")
    assert [e["id"] for e in await store.events_after(0, "t1")][-1] == ev.id
    # A field the table does not have is refused with its name, and nothing is written.
    with pytest.raises(AttributeError, match="no column outptu"):
        await store.upsert_stream(
            "t1", "a", event=("stream.state", {"state": "x"}), state="failed", outptu="x"
        )
    [row] = await store.streams_of("t1")
    assert row.state == "accepted"
    assert len(await store.events_after(ev.id, "t1")) == 0


async def test_a_step_is_replaced_not_doubled(store: Store) -> None:
    await store.put_step("t1", "k", {"v": 1})
    await store.put_step("t1", "k", {"v": 2})
    assert await store.get_step("t1", "k") == {"v": 2}
    assert await store.get_step("t1", "other") is None


async def test_task_updates_name_a_missing_task_and_keep_their_events(store: Store) -> None:
    with pytest.raises(KeyError):
        await store.transition("nope", "planning")
    with pytest.raises(KeyError):
        await store.update_task("nope", result="x")
    ev = await store.update_task("t1", event=("task.note", {"n": 1}), result="r")
    assert ev is not None and ev.data == {"n": 1}
    previous, same = await store.transition("t1", "queued")  # no move: no event
    assert previous == "queued" and same is None
    row = await store.get_task("t1")
    assert row is not None and row.result == "r" and row.state == "queued"
    assert await store.get_task("nope") is None


async def test_usage_rows_keep_every_column(store: Store) -> None:
    row = UsageRow(
        task_id="t1",
        stream_id="a",
        role="executor",
        purpose="execute",
        model="m",
        prompt_tokens=11,
        completion_tokens=7,
        cost_usd=0.5,
        latency_s=1.25,
        outcome="error",
        attempts=2,
        error="boom",
        started_at=3.0,
    )
    await store.record_usage(row)
    [back] = await store.usage_of("t1")
    for name in UsageRow.model_fields:
        if name != "id":
            assert getattr(back, name) == getattr(row, name), name


async def test_a_usage_row_and_its_event_commit_together(store: Store) -> None:
    heard: list[str] = []
    store.add_listener(lambda ev: heard.append(ev.type))
    row = UsageRow(task_id="t1", role="executor", purpose="execute", model="m", prompt_tokens=3)
    await store.record_usage(row, event=("model.call", {"role": "executor", "prompt_tokens": 3}))
    assert [r.prompt_tokens for r in await store.usage_of("t1")] == [3]
    last = (await store.events_after(0, "t1"))[-1]
    assert (last["type"], last["data"]) == ("model.call", {"role": "executor", "prompt_tokens": 3})
    assert heard == ["model.call"]  # announced once it committed


async def _keys(store: Store, task_id: str) -> set[str]:
    start = await store.run_start(task_id)
    assert start is not None
    return start.step_keys


async def test_a_run_starts_from_its_own_task_steps_and_attachments(store: Store) -> None:
    now = time.time()
    await store.create_task(
        TaskRow(id="t2", state="queued", goal="g2", created_at=now, updated_at=now),
        [
            AttachmentRow(
                task_id="t2",
                position=0,
                name="a.txt",
                media_type="text/csv",
                kind="table",
                sha256="x",
                size=1,
                folder="f",
                created_at=now,
            )
        ],
    )
    assert await _keys(store, "t1") == set()
    await store.put_step("t1", "exec:a:r0:a0", {"text": "x"})
    await store.upsert_stream("t1", "a", step=("stream:a", {"output": "x"}), state="accepted")
    await store.put_step("t2", "plan:0", {"text": "y"})
    assert await _keys(store, "t1") == {"exec:a:r0:a0", "stream:a"}
    start = await store.run_start("t2")
    assert start is not None and start.task.goal == "g2" and start.step_keys == {"plan:0"}
    assert [a.name for a in start.attachments] == ["a.txt"]
    one = await store.run_start("t1")
    assert one is not None and one.attachments == []
    assert await store.run_start("nope") is None


async def test_advance_moves_with_its_event_only_when_allowed(store: Store) -> None:
    seen: list[str] = []

    def allowed(current: str) -> bool:
        seen.append(current)
        return current != "running"

    assert await store.advance("t1", "planning", allowed, reason="go", plan_json="{}") == (
        "queued",
        True,
    )
    assert seen == ["queued"]  # decided on the row as it was
    row = await store.get_task("t1")
    assert row is not None and (row.state, row.plan_json) == ("planning", "{}")
    last = (await store.events_after(0, "t1"))[-1]
    assert last["data"] == {"state": "planning", "previous": "queued", "reason": "go"}
    await store.transition("t1", "running")
    events = len(await store.events_after(0, "t1"))
    # Refused: no move and no event; only the fields that differ are written.
    assert await store.advance("t1", "reviewing", allowed, result="r") == ("running", False)
    row = await store.get_task("t1")
    assert row is not None and (row.state, row.result) == ("running", "r")
    assert len(await store.events_after(0, "t1")) == events
    # Moving to the state it is in is no move either.
    assert await store.advance("t1", "running", lambda _: True) == ("running", False)
    assert await store.advance("nope", "running", lambda _: True) == (None, False)


async def test_advance_leaves_a_task_in_a_final_state_as_it_is(store: Store) -> None:
    await store.transition("t1", "canceled", reason="by client")
    before = await store.get_task("t1")
    events = len(await store.events_after(0, "t1"))
    assert await store.advance("t1", "completed", lambda _: True, result="late") == (
        "canceled",
        False,
    )
    after = await store.get_task("t1")
    assert after is not None and before is not None
    assert (after.state, after.result, after.updated_at) == ("canceled", None, before.updated_at)
    assert len(await store.events_after(0, "t1")) == events


async def test_a_streams_update_writes_an_event_before_its_own_in_one_transaction(
    store: Store,
) -> None:
    heard: list[str] = []
    store.add_listener(lambda ev: heard.append(ev.type))
    await store.add_streams("t1", [{"stream_id": "a"}])
    written = await store.upsert_stream(
        "t1",
        "a",
        step=("stream:a", {"output": "x"}),
        event=("stream.state", {"stream_id": "a", "state": "accepted"}),
        first=("review.verdict", {"stream_id": "a", "verdict": "accept"}),
        state="accepted",
    )
    assert written is not None and written.type == "stream.state"
    events = [(e["type"], e["id"]) for e in await store.events_after(0, "t1")][-2:]
    assert [t for t, _ in events] == ["review.verdict", "stream.state"]
    assert events[1][0] == "stream.state" and written.id == events[1][1]
    assert heard[-2:] == ["review.verdict", "stream.state"]  # both announced, in order
