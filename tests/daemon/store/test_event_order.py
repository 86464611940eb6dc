"""Events of several daemons on one PostgreSQL store.

- A follower that reads `events_after(the last id it saw)` over and over, while three daemons
  write at once, sees every event exactly once, in id order. That needs ids committed in id
  order across daemons (`daemon.store.events.order_events`): otherwise an event whose
  transaction is still open when a higher id commits would be skipped for good. One of the
  writers keeps each transaction open a moment after its insert, as a busy daemon may, so
  that a missing order shows at once.
- Each daemon announces to its listeners the events the others committed, marked foreign,
  and never its own again (`EventLog.announce_others`, `follow_others`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from daemon.store.events import NewEvent, add_event
from daemon.store.statements import insert_event
from daemon.store.store import Lease, Store, TaskRow

#: Events each fast writer appends, transactions the slow one commits.
FAST = 200
SLOW = 40


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[Store, Store, Store]]:
    """The stores of three daemons on one new database, opened; closed after the test."""
    opened = tuple(Store(postgres_url, lease=Lease(name, 30.0)) for name in "abc")
    try:
        for store in opened:
            await store.open()
        yield opened[0], opened[1], opened[2]
    finally:
        for store in opened:
            await store.close()


def _task(task_id: str) -> TaskRow:
    now = time.time()
    return TaskRow(id=task_id, state="queued", goal="g", created_at=now, updated_at=now)


def _slow_writer(url: str) -> None:
    """A third daemon whose transactions stay open a little after their event's insert, by
    both ways the store inserts events (a Core statement, the ORM)."""
    engine = create_engine(url)
    try:
        for i in range(SLOW):
            if i % 2:
                with engine.begin() as conn:
                    insert_event(conn, None, "slow", {"i": i})
                    time.sleep(0.005)
            else:
                with Session(engine) as s:
                    add_event(s, None, "slow-orm", {"i": i})
                    s.flush()
                    time.sleep(0.005)
                    s.commit()
    finally:
        engine.dispose()


async def test_a_follower_sees_every_event_of_every_daemon_once_in_order(
    postgres_url: str, stores: tuple[Store, Store, Store]
) -> None:
    a, b, reader = stores
    written = asyncio.Event()

    async def write(store: Store, name: str) -> None:
        for i in range(FAST):
            if i % 25 == 0:  # now and then an event written with its task, by the ORM
                await store.create_task(_task(f"{name}{i}"))
            else:
                await store.append_event(None, name, {"i": i})

    async def write_all() -> None:
        await asyncio.gather(
            write(a, "a"), write(b, "b"), asyncio.to_thread(_slow_writer, postgres_url)
        )
        written.set()

    seen: list[int] = []
    reads = 0

    async def follow() -> None:
        nonlocal reads
        last = 0
        while True:
            finished = written.is_set()
            batch = await reader.events_after(last, limit=1000)
            reads += 1
            seen.extend(event["id"] for event in batch)
            if batch:
                last = batch[-1]["id"]
            elif finished:
                return  # everything was committed before this empty read
            else:
                await asyncio.sleep(0)

    await asyncio.gather(write_all(), follow())
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        ids: list[int] = list(conn.execute(text("SELECT id FROM events ORDER BY id")).scalars())
    engine.dispose()
    assert len(ids) == 2 * FAST + SLOW
    assert reads > 20  # the follower read while the daemons wrote, not only at the end
    missed = sorted(set(ids) - set(seen))
    assert missed == [], f"the follower skipped {len(missed)} events: {missed[:20]}"
    assert seen == ids  # each once, in order


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_announce_others_tells_the_other_daemons_events_and_none_of_its_own(
    stores: tuple[Store, Store, Store],
) -> None:
    a, b, _ = stores
    heard: list[NewEvent] = []
    b.add_listener(heard.append)
    await a.append_event(None, "a-before", {})
    await b.append_event(None, "b-before", {})
    # Following starts from the last event there is (the loop itself never runs here: a
    # period of an hour; each look below is one `announce_others`).
    following = asyncio.create_task(b.follow_others(3600))
    try:
        await _until(lambda: b._followed is not None)
        heard.clear()
        theirs: list[int] = []
        mine: list[int] = []
        for i in range(10):
            by_a, by_b = await asyncio.gather(
                a.append_event(None, "a", {"i": i}), b.append_event(None, "b", {"i": i})
            )
            theirs.append(by_a.id)
            mine.append(by_b.id)
        theirs.append((await a.create_task(_task("ta"))).id)
        mine.append((await b.create_task(_task("tb"))).id)
        # So far b's listeners heard b's own events, as its own.
        assert [(ev.id, ev.foreign) for ev in heard] == [(i, False) for i in mine]
        assert await b.announce_others() == len(theirs) + len(mine)
        foreign = [ev for ev in heard if ev.foreign]
        assert [ev.id for ev in foreign] == sorted(theirs)
        assert [(ev.type, ev.data) for ev in foreign[:2]] == [("a", {"i": 0}), ("a", {"i": 1})]
        assert (foreign[-1].task_id, foreign[-1].type) == ("ta", "task.state")
        assert [ev.id for ev in heard if not ev.foreign] == mine  # not announced again
        assert "a-before" not in {ev.type for ev in heard}  # from before following began
        # Nothing new: nothing announced; then only what is new.
        count = len(heard)
        assert await b.announce_others() == 0 and len(heard) == count
        later = await a.append_event(None, "a-later", {})
        assert await b.announce_others() == 1
        assert [(ev.id, ev.foreign) for ev in heard[count:]] == [(later.id, True)]
    finally:
        following.cancel()


async def test_following_while_both_write_announces_each_foreign_event_once(
    stores: tuple[Store, Store, Store],
) -> None:
    a, b, _ = stores
    heard: list[NewEvent] = []
    b.add_listener(heard.append)
    following = asyncio.create_task(b.follow_others(0.002))
    try:
        await _until(lambda: b._followed is not None)

        async def write(store: Store) -> list[int]:
            return [(await store.append_event(None, "e", {"i": i})).id for i in range(100)]

        theirs, mine = await asyncio.gather(write(a), write(b))
        await _until(lambda: sum(ev.foreign for ev in heard) >= len(theirs))
        await asyncio.sleep(0.05)  # a few more looks: nothing else may come
    finally:
        following.cancel()
    # Every look that read b's own events came after b had announced them: never foreign.
    assert [ev.id for ev in heard if ev.foreign] == theirs
    assert [ev.id for ev in heard if not ev.foreign] == mine
