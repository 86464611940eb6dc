"""Task leases (`daemon.store.leases`), on SQLite and on PostgreSQL: a new task is its
creator's; another daemon can claim it only once the lease has expired (or was released);
renewing keeps a lease and tells which were lost; an ended task is nobody's to claim; two
daemons racing for the same tasks get one winner each; the database's clock is the one they
share; and a database from before leases (schema v6) hands its tasks to the first claimer.

Each "daemon" is a `Store` with a `Lease` of its own. On SQLite two daemons never share a
database (its file lock refuses the second, `test_store_lock.py`); the lease statements are
the same there, so the SQLite runs open two stores of one process on one file, the file lock
set aside.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text
from test_schema_compat import V6_SCHEMA

from daemon.store.database import connect
from daemon.store.leases import db_now
from daemon.store.lock import NoLock
from daemon.store.store import SCHEMA_VERSION, Lease, Store, TaskRow

OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of an empty database: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    monkeypatch.setattr("daemon.store.thread.lock_store", lambda _url: NoLock())
    return f"sqlite:///{tmp_path / 'tierd.db'}"


@pytest.fixture
async def daemon(url: str) -> AsyncIterator[OpenStore]:
    """Opens the store of a daemon named `owner` (leases of `seconds`); closed after the test."""
    opened: list[Store] = []

    async def open_store(owner: str | None, seconds: float = 30.0) -> Store:
        store = Store(url, lease=None if owner is None else Lease(owner, seconds))
        opened.append(store)
        await store.open()
        return store

    yield open_store
    for store in opened:
        await store.close()


def _task(task_id: str) -> TaskRow:
    now = time.time()
    return TaskRow(id=task_id, state="queued", goal="g", created_at=now, updated_at=now)


async def _create(store: Store, *ids: str) -> None:
    for task_id in ids:
        await store.create_task(_task(task_id))


async def test_a_new_task_is_its_creators_until_its_lease_ends(daemon: OpenStore) -> None:
    a = await daemon("host/a")
    b = await daemon("host/b")
    await _create(a, "t1")
    held = await b.lease_of("t1")
    assert held is not None and held[0] == "host/a" and 29.0 < held[1] <= 30.0
    # The other daemon may neither claim it nor see it as claimable; its creator may.
    assert await b.claim_task("t1") is False
    assert await b.claimable_task_ids() == []
    assert await a.claimable_task_ids() == ["t1"]
    assert await a.claim_task("t1") is True  # already ours: claimed again
    assert (await b.lease_of("t1") or ("", 0.0))[0] == "host/a"
    # So is one created under an idempotency key; the other daemon creating it again gets
    # the task, not its lease.
    keyed = _task("t-keyed")
    keyed.idempotency_key = "key-1"
    assert (await a.create_task_once(keyed))[1] is True
    again = _task("t-keyed-2")
    again.idempotency_key = "key-1"
    task, created = await b.create_task_once(again)
    assert task.id == "t-keyed" and created is False
    assert (await b.lease_of("t-keyed") or ("", 0.0))[0] == "host/a"
    assert await b.claimable_task_ids() == []
    # A task created by a store without a lease (a tool's) is nobody's: the first claims it.
    tool = await daemon(None)
    await _create(tool, "t2")
    assert await a.lease_of("t2") is None
    assert await b.claimable_task_ids() == ["t2"]
    assert await b.claim_task("t2") is True
    assert await a.claim_task("t2") is False
    assert (await a.lease_of("t2") or ("", 0.0))[0] == "host/b"


async def test_the_start_of_a_task_just_created_here_costs_no_query(daemon: OpenStore) -> None:
    """Its lease was set in the creating transaction: the first claim (the run's start) only
    checks that it is fresh; any later claim asks the database."""
    from sqlalchemy import event

    a = await daemon("host/a")
    await _create(a, "t1")
    statements: list[str] = []
    engine = a._engine
    assert engine is not None

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert await a.claim_task("t1") is True
        assert statements == []
        assert await a.claim_task("t1") is True  # the second asks
        assert any(s.lstrip().upper().startswith("UPDATE") for s in statements)
    finally:
        event.remove(engine, "before_cursor_execute", seen)


async def test_an_expired_lease_can_be_claimed_by_another_daemon(daemon: OpenStore) -> None:
    a = await daemon("host/a", 0.3)
    b = await daemon("host/b")
    await _create(a, "t1")
    assert await b.claim_task("t1") is False
    await asyncio.sleep(0.45)
    held = await b.lease_of("t1")
    assert held is not None and held[0] == "host/a" and held[1] < 0  # expired, not released
    assert await b.claimable_task_ids() == ["t1"]
    assert await b.claim_task("t1") is True
    held = await a.lease_of("t1")
    assert held is not None and held[0] == "host/b" and held[1] > 29.0
    # Now the first daemon is the other one.
    assert await a.claim_task("t1") is False
    assert await a.claimable_task_ids() == []


async def test_renewing_keeps_the_leases_and_names_the_lost_ones(daemon: OpenStore) -> None:
    a = await daemon("host/a", 0.5)
    b = await daemon("host/b")
    await _create(a, "t1", "t2", "t3")
    await asyncio.sleep(0.3)
    before = await a.lease_of("t1")
    assert await a.renew_leases(["t1", "t2", "t3"]) == {"t1", "t2", "t3"}
    after = await a.lease_of("t1")
    assert before is not None and after is not None
    # Renewed: about 0.5 s left again, where the lease had about 0.2 s left.
    assert after[1] - before[1] > 0.15, (before, after)
    assert await b.claim_task("t1") is False
    await asyncio.sleep(0.7)  # a is too slow to renew: every lease expires
    assert await b.claim_task("t2") is True
    # t2 is lost to b; t1 and t3 expired, but nobody took them: still a's, and renewed.
    assert await a.renew_leases(["t1", "t2", "t3", "no-such-task"]) == {"t1", "t3"}
    for task_id, owner in (("t1", "host/a"), ("t2", "host/b"), ("t3", "host/a")):
        held = await b.lease_of(task_id)
        assert held is not None and held[0] == owner and held[1] > 0, (task_id, held)
    assert await b.claimable_task_ids() == ["t2"]  # t1, t3 are a's again
    assert await a.renew_leases([]) == set()


async def test_an_ended_task_stays_ours_but_is_neither_renewed_nor_claimable(
    daemon: OpenStore,
) -> None:
    a = await daemon("host/a", 0.5)
    b = await daemon("host/b")
    await _create(a, "ended", "live")
    await a.transition("ended", "canceled")
    await asyncio.sleep(0.3)
    # Its run here may still be finishing: ours, but its lease is not extended.
    assert await a.renew_leases(["ended", "live"]) == {"ended", "live"}
    ended, live = await a.lease_of("ended"), await a.lease_of("live")
    assert ended is not None and live is not None
    assert ended[0] == live[0] == "host/a"
    # Created together; only the live one's lease was moved on (by the 0.3 s slept).
    assert live[1] - ended[1] > 0.15, (ended, live)
    await asyncio.sleep(0.7)
    # Both leases ran out: the live task goes to whoever claims it, the ended one to nobody.
    assert await b.claimable_task_ids() == ["live"]
    assert await a.claimable_task_ids() == ["live"]
    assert await b.claim_task("ended") is False
    assert await a.claim_task("ended") is False
    assert await b.claim_task("live") is True


async def test_a_released_lease_is_free_at_once(daemon: OpenStore) -> None:
    a = await daemon("host/a")
    b = await daemon("host/b")
    await _create(a, "t1", "t2")
    await a.release_leases(["t1"])
    assert await a.lease_of("t1") is None
    assert await b.claimable_task_ids() == ["t1"]
    assert await b.claim_task("t1") is True
    assert await b.claim_task("t2") is False  # not released
    # Releasing a lease one does not hold leaves it to its holder.
    await a.release_leases(["t1"])
    assert (await a.lease_of("t1") or ("", 0.0))[0] == "host/b"
    await a.release_leases([])
    assert (await a.lease_of("t2") or ("", 0.0))[0] == "host/a"


async def test_two_daemons_racing_for_the_same_tasks_win_each_once(daemon: OpenStore) -> None:
    tool = await daemon(None)
    ids = [f"t{i:02d}" for i in range(30)]
    await _create(tool, *ids)
    a = await daemon("host/a")
    b = await daemon("host/b")
    # Task after task, both claim it at once, each on its store's thread and connection (two
    # long queues of claims would drift apart, and rarely meet on one task).
    won_a: list[bool] = []
    won_b: list[bool] = []
    for task_id in ids:
        by_a, by_b = await asyncio.gather(a.claim_task(task_id), b.claim_task(task_id))
        won_a.append(by_a)
        won_b.append(by_b)
    for task_id, by_a, by_b in zip(ids, won_a, won_b, strict=True):
        assert by_a != by_b, (task_id, by_a, by_b)  # exactly one winner
        held = await a.lease_of(task_id)
        assert held is not None and held[0] == ("host/a" if by_a else "host/b")
    # And what each won is what each may renew.
    assert await a.renew_leases(ids) == {i for i, w in zip(ids, won_a, strict=True) if w}
    assert await b.renew_leases(ids) == {i for i, w in zip(ids, won_b, strict=True) if w}


def test_db_now_is_the_databases_clock_read_at_each_statement(url: str) -> None:
    engine = connect(url)
    try:
        with engine.begin() as conn:  # one transaction: the clock still moves within it
            before = time.time()
            first = conn.execute(select(db_now())).scalar_one()
            time.sleep(0.1)
            second = conn.execute(select(db_now())).scalar_one()
            after = time.time()
    finally:
        engine.dispose()
    assert isinstance(first, float)
    assert before - 1.0 < first < after + 1.0
    assert 0.08 < second - first < 1.0, (first, second)


async def _v6_database(url: str) -> None:
    """A database of schema v6 (before leases), with a live task and an ended one."""
    rows = [
        "INSERT INTO meta VALUES ('schema_version', '6')",
        "INSERT INTO tasks (id, state, goal, context, options_json, created_at, updated_at) "
        "VALUES ('t-live', 'running', 'g', '', '{}', 1.0, 2.0), "
        "('t-ended', 'completed', 'g', '', '{}', 1.5, 2.5)",
    ]
    database = make_url(url).database
    if url.startswith("sqlite") and database:
        # The tables exactly as tierd 6 made them (the snapshot of test_schema_compat).
        db = sqlite3.connect(database)
        for statement in V6_SCHEMA + rows:
            db.execute(statement)
        db.commit()
        db.close()
        return
    # PostgreSQL: tierd 6's tables are this version's without the two lease columns.
    store = Store(url)
    await store.open()
    await store.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM meta"))
        conn.execute(text("ALTER TABLE tasks DROP COLUMN lease_owner"))
        conn.execute(text("ALTER TABLE tasks DROP COLUMN lease_expires_at"))
        for statement in rows:
            conn.execute(text(statement))
    engine.dispose()


async def test_a_v6_database_gets_leases_and_its_tasks_are_claimable(
    url: str, daemon: OpenStore
) -> None:
    assert SCHEMA_VERSION == 7
    await _v6_database(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        columns = list(conn.execute(text("SELECT * FROM tasks")).keys())
    engine.dispose()
    assert "goal" in columns
    assert "lease_owner" not in columns and "lease_expires_at" not in columns
    a = await daemon("host/a")
    b = await daemon("host/b")
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM meta")).scalars().all() == ["7"]
        leases = conn.execute(
            text("SELECT id, lease_owner, lease_expires_at FROM tasks ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in leases] == [("t-ended", None, None), ("t-live", None, None)]
    # The tasks from before are nobody's: the live one goes to the first daemon that claims.
    assert await a.lease_of("t-live") is None
    assert await a.claimable_task_ids() == ["t-live"] == await b.claimable_task_ids()
    assert await b.claim_task("t-live") is True
    assert await a.claim_task("t-live") is False
    assert await a.claim_task("t-ended") is False
    # New tasks are leased as usual next to them.
    await _create(a, "t-new")
    assert (await b.lease_of("t-new") or ("", 0.0))[0] == "host/a"


async def test_a_run_here_may_fail_a_task_only_while_its_lease_is_ours(
    daemon: OpenStore,
) -> None:
    """A daemon that froze past its lease must not write its run's failure over the task the
    other daemon took over (`still_ours`, asked before a run's failure is written)."""
    from daemon.engine.leases import still_ours

    a = await daemon("host/a", 0.3)
    b = await daemon("host/b")
    await _create(a, "t1")
    assert await still_ours(a, "t1") and not await still_ours(b, "t1")
    await asyncio.sleep(0.45)
    assert await still_ours(a, "t1")  # expired, but nobody took it: still A's to end
    assert await b.claim_task("t1")
    assert not await still_ours(a, "t1") and await still_ours(b, "t1")
