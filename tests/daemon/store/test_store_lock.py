"""Who may open a store: SQLite is one daemon's, PostgreSQL is shared.

- SQLite: the lock beside the database file; a second opener is refused (`StoreInUse`) until
  the first closes, two names of one file take one lock, a killed holder leaves it free, and
  two real daemons of two homes on one database: the second is refused, the first goes on.
- PostgreSQL: the stores of two daemons work on one database at once (what one writes, the
  other reads; no session left in a transaction; no password in any message), and daemons
  that start at once on a new or an older database create or migrate its schema once
  (`migration_lock`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from support import ROOT
from support.daemon import DaemonProcess, write_config
from support.postgres import PostgresCluster

from daemon.store.lock import lock_file_of
from daemon.store.store import SCHEMA_VERSION, Lease, SchemaTooNew, Store, StoreInUse, TaskRow


def _task(task_id: str = "t1") -> TaskRow:
    now = time.time()
    return TaskRow(id=task_id, state="queued", goal="g", created_at=now, updated_at=now)


async def test_a_second_store_on_one_sqlite_file_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tierd.db"
    first = Store(f"sqlite:///{db}")
    await first.open()
    await first.create_task(_task())
    second = Store(f"sqlite:///{db}")
    with pytest.raises(StoreInUse) as refused:
        await second.open()
    await second.close()
    message = str(refused.value)
    assert str(db) in message and f"pid {os.getpid()}" in message
    assert "in use by another tierd daemon" in message and "[store] url" in message
    assert (await first.get_task("t1")) is not None  # the first is untouched and goes on
    await first.close()
    third = Store(f"sqlite:///{db}")
    await third.open()  # released on close
    assert (await third.get_task("t1")) is not None
    await third.close()


async def test_two_names_of_one_file_take_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "a" / "tierd.db"
    real.parent.mkdir()
    (tmp_path / "b").symlink_to(real.parent)
    link = tmp_path / "c.db"
    link.symlink_to(real)
    first = Store(f"sqlite:///{real}")
    await first.open()
    assert lock_file_of(real).is_file()
    for other in (link, tmp_path / "b" / "tierd.db", tmp_path / "a" / ".." / "a" / "tierd.db"):
        store = Store(f"sqlite:///{other}")
        with pytest.raises(StoreInUse, match=str(real)):
            await store.open()
        await store.close()
    await first.close()


async def test_a_store_that_fails_to_open_holds_no_lock(tmp_path: Path) -> None:
    db = tmp_path / "tierd.db"
    store = Store(f"sqlite:///{db}")
    await store.open()
    await store.execute_raw("UPDATE meta SET value='99' WHERE key='schema_version'")
    await store.close()
    refused = Store(f"sqlite:///{db}")
    with pytest.raises(SchemaTooNew):
        await refused.open()
    # Not closed yet, and still nothing held: the next opener gets the schema error, not
    # "in use".
    again = Store(f"sqlite:///{db}")
    with pytest.raises(SchemaTooNew):
        await again.open()
    await refused.close()
    await again.close()


async def test_stores_in_memory_are_not_locked() -> None:
    stores = [Store("sqlite://"), Store("sqlite:///:memory:")]
    for store in stores:
        await store.open()
    for store in stores:
        await store.close()


def test_a_killed_holder_leaves_the_store_free(tmp_path: Path) -> None:
    db = tmp_path / "tierd.db"

    async def open_and_close() -> None:
        store = Store(f"sqlite:///{db}")
        try:
            await store.open()
        finally:
            await store.close()

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, time\n"
            "from daemon.store.store import Store\n"
            f"asyncio.run(Store({f'sqlite:///{db}'!r}).open())\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreInUse, match=f"pid {holder.pid}"):
            asyncio.run(open_and_close())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    asyncio.run(open_and_close())  # the kernel dropped the dead process's lock


def test_an_unusable_lock_place_is_one_clear_error(tmp_path: Path) -> None:
    from daemon.store.store import StoreUnavailable

    missing = tmp_path / "no-such-dir" / "tierd.db"

    async def open_it() -> None:
        store = Store(f"sqlite:///{missing}")
        try:
            await store.open()
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable, match="cannot create the task store's lock file"):
        asyncio.run(open_it())


# --- PostgreSQL: shared by several daemons -----------------------------------------------------


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql`, read on a connection of its own (not one of the stores')."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _sessions(url: str) -> list[tuple[str, str]]:
    """(state, last query) of every other client session on `url`'s database."""
    return _query(
        url,
        "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )


def _advisory_locks(url: str) -> list[tuple[Any, ...]]:
    """The advisory locks held on `url`'s database (by anyone)."""
    return _query(
        url,
        "SELECT classid, objid, pid FROM pg_locks WHERE locktype = 'advisory' AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
    )


async def test_postgres_two_daemons_work_on_one_database_at_once(postgres_url: str) -> None:
    first = Store(postgres_url, lease=Lease("host-a/1", 30.0))
    second = Store(postgres_url, lease=Lease("host-b/2", 30.0))
    try:
        await first.open()
        await second.open()  # not refused: a PostgreSQL store is made to be shared
        await first.create_task(_task("t1"))
        await second.create_task(_task("t2"))
        await second.transition("t2", "planning")
        # What one writes, the other reads: the tasks, and the events in the order written.
        for store in (first, second):
            assert {t.id for t in await store.list_tasks(None, 10, None)} == {"t1", "t2"}
            events = await store.events_after(0)
            assert [(e["task_id"], e["data"]["state"]) for e in events] == [
                ("t1", "queued"),
                ("t2", "queued"),
                ("t2", "planning"),
            ]
        # Each task is its creator's, and the other daemon cannot take it.
        held_1, held_2 = await second.lease_of("t1"), await first.lease_of("t2")
        assert held_1 is not None and held_1[0] == "host-a/1" and 25 < held_1[1] <= 30
        assert held_2 is not None and held_2[0] == "host-b/2"
        assert not await second.claim_task("t1") and not await first.claim_task("t2")
        assert await first.claimable_task_ids() == ["t1"]
        assert await second.claimable_task_ids() == ["t2"]
        # Between calls no session of theirs is left in a transaction (which would hold its
        # locks and its snapshot), and no advisory lock is held: the migration lock was
        # given back once the schema was ready, the event-order lock ends with each write.
        sessions = _sessions(postgres_url)
        assert len(sessions) >= 2, sessions  # both pools keep their connections
        assert [s for s in sessions if s[0] != "idle"] == [], sessions
        assert _advisory_locks(postgres_url) == []
    finally:
        await first.close()
        await second.close()
    # Closing let go of every connection (a backend leaves pg_stat_activity soon after its
    # client hangs up, not at once).
    for _ in range(500):
        if not _sessions(postgres_url):
            break
        await asyncio.sleep(0.02)
    assert _sessions(postgres_url) == []
    # The password is in no message: the stores name themselves without it...
    for store in (first, second):
        assert "secret-pw" not in store.location
        assert store.location.startswith("postgresql+psycopg://tierd:***@127.0.0.1:")
    # ... and neither does the error of a database that cannot be reached.
    missing_url = make_url(postgres_url).set(database="no_such_database")
    missing = Store(missing_url.render_as_string(hide_password=False))
    assert "secret-pw" in missing.url
    with pytest.raises(Exception) as failed:  # whatever the driver raises
        await missing.open()
    await missing.close()
    words = "".join(traceback.format_exception(failed.value))
    assert "no_such_database" in words and "secret-pw" not in words, words


async def _open_at_once(url: str, count: int) -> list[Store]:
    """`count` stores of `count` daemons, opened on `url` at the same time (each store opens
    on a thread of its own)."""
    stores = [Store(url, lease=Lease(f"daemon-{i}", 30.0)) for i in range(count)]
    opened = await asyncio.gather(*(store.open() for store in stores), return_exceptions=True)
    for store in stores:
        await store.close()
    failures = [result for result in opened if isinstance(result, BaseException)]
    assert failures == [], failures
    return stores


def _schema_version(url: str) -> list[tuple[Any, ...]]:
    return _query(url, "SELECT key, value FROM meta")


async def test_postgres_daemons_starting_at_once_on_a_new_database_create_it_once(
    postgres_cluster: PostgresCluster,
) -> None:
    # Without the migration lock each would see no tables and create them all: all but one
    # fail on the tables the first created. A few databases, four daemons each, so that the
    # race is run more than once.
    for _ in range(3):
        url = postgres_cluster.new_database()
        await _open_at_once(url, 4)
        assert _schema_version(url) == [("schema_version", str(SCHEMA_VERSION))]
        tables = {row[0] for row in _query(url, "SELECT tablename FROM pg_tables")}
        assert {"tasks", "events", "meta", "steps", "streams", "usage"} <= tables
        assert _advisory_locks(url) == []
        # And the schema works for all of them afterwards.
        store = Store(url, lease=Lease("later", 30.0))
        await store.open()
        await store.create_task(_task())
        assert await store.claim_task("t1")
        await store.close()


async def test_postgres_daemons_starting_at_once_on_an_old_database_migrate_it_once(
    postgres_cluster: PostgresCluster,
) -> None:
    # A version 6 database (before task leases) with a task in it; four daemons of version 7
    # start at once. Unserialised, each would add the lease columns, and all but one fail.
    for _ in range(3):
        url = postgres_cluster.new_database()
        store = Store(url)
        await store.open()
        await store.create_task(_task("t-old"))
        await store.close()
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE tasks DROP COLUMN lease_owner"))
            conn.execute(text("ALTER TABLE tasks DROP COLUMN lease_expires_at"))
            conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))
        engine.dispose()
        stores = await _open_at_once(url, 4)
        assert _schema_version(url) == [("schema_version", str(SCHEMA_VERSION))]
        columns = _query(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks' "
            "AND column_name LIKE 'lease%' ORDER BY column_name",
        )
        assert columns == [("lease_expires_at",), ("lease_owner",)]
        # The task from before is nobody's, so any of the daemons may claim it.
        again = Store(url, lease=stores[2].lease)
        await again.open()
        assert await again.lease_of("t-old") is None
        assert await again.claim_task("t-old")
        await again.close()


# --- two real daemons ------------------------------------------------------------------------


def test_a_second_daemon_on_the_first_ones_store_does_not_start(
    tmp_path: Path, home: Path, daemon_factory: Any
) -> None:
    write_config(home, None)
    first = daemon_factory().start()
    other_home = tmp_path / "other"
    other_home.mkdir()
    # A symlink to the first home's database: the lock follows it to the same file.
    (tmp_path / "alias.db").symlink_to(home / "tierd.db")
    for url in (f"sqlite:///{home / 'tierd.db'}", f"sqlite:///{tmp_path / 'alias.db'}"):
        write_config(other_home, None, f'[store]\nurl = "{url}"\n')
        second = DaemonProcess(other_home)
        proc = second.spawn()
        try:
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0, err
        assert "in use by another tierd daemon" in err and str(home / "tierd.db") in err
        assert f"pid {first.proc.pid}" in err
        assert "Traceback" not in err
        assert not (other_home / "daemon.json").exists()
    assert first.rpc("daemon/status")["result"]  # the first never noticed
