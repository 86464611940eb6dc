"""Two daemons moving one task at once on a shared PostgreSQL store: the state a move is
checked against is the one it replaces (the row is locked while it is read), so a cancel
through one daemon is never undone by a move the other daemon checked a moment earlier."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from daemon.store import statements as sql
from daemon.store.store import Lease, Store, TaskRow


@pytest.fixture
def slow_reads_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[int]]:
    """The store threads (by ident) whose state reads take half a second: a network round
    trip, stretched, between a move's check and its write."""
    slow: set[int] = set()
    read = sql.task_state

    def slow_state(conn: object, task_id: str) -> str | None:
        state = read(conn, task_id)  # type: ignore[arg-type]
        if threading.get_ident() in slow:
            time.sleep(0.5)
        return state

    monkeypatch.setattr(sql, "task_state", slow_state)
    yield slow


async def test_a_cancel_through_one_daemon_is_not_undone_by_the_others_move(
    postgres_url: str, slow_reads_on: set[int]
) -> None:
    a = Store(postgres_url, lease=Lease("host/a", 30))
    b = Store(postgres_url, lease=Lease("host/b", 30))
    await a.open()
    await b.open()
    try:
        now = time.time()
        await a.create_task(
            TaskRow(id="t1", state="queued", goal="g", created_at=now, updated_at=now)
        )
        await a.transition("t1", "planning")
        await a.transition("t1", "running")
        slow_reads_on.add(await a._run(threading.get_ident))
        moving = asyncio.create_task(a.transition("t1", "reviewing", reason="run on A"))
        await asyncio.sleep(0.1)  # A has read "running" and not written yet
        previous, _ = await b.transition("t1", "canceled", reason="canceled by client")
        assert (await moving)[0] == "running"
        # B waited for A's move and canceled what A had moved to: the cancel stands.
        assert previous == "reviewing"
        row = await b.get_task("t1")
        assert row is not None and row.state == "canceled"
        states = [e["data"]["state"] for e in await b.events_after(0, "t1")]
        assert states[-2:] == ["reviewing", "canceled"]
        assert await a.claimable_task_ids() == []
    finally:
        await a.close()
        await b.close()
