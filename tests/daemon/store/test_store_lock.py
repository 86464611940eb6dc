"""One store, one daemon: the lock that belongs to the database, on SQLite and PostgreSQL, and
two real daemons of two homes on one database (the second is refused, the first goes on)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.daemon import DaemonProcess, write_config

from daemon.store.lock import AdvisoryLock, lock_file_of
from daemon.store.store import SchemaTooNew, Store, StoreInUse, TaskRow


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


# --- PostgreSQL ------------------------------------------------------------------------------


class _FakeResult:
    def __init__(self, value: Any) -> None:
        self._value = value

    def scalar(self) -> Any:
        return self._value


class _FakeConnection:
    def __init__(self, granted: bool, log: list[str]) -> None:
        self._granted = granted
        self.log = log

    def execute(self, statement: Any, params: Any = None) -> _FakeResult:
        self.log.append(str(statement))
        return _FakeResult(self._granted)

    def commit(self) -> None:
        self.log.append("commit")

    def invalidate(self) -> None:
        self.log.append("invalidate")

    def close(self) -> None:
        self.log.append("close")


class _FakeEngine:
    def __init__(self, granted: bool) -> None:
        self.log: list[str] = []
        self._granted = granted

    def connect(self) -> _FakeConnection:
        return _FakeConnection(self._granted, self.log)


def test_the_advisory_lock_is_tried_once_and_its_session_left_idle() -> None:
    engine = _FakeEngine(granted=True)
    lock = AdvisoryLock(engine, "postgresql://u:***@h/db")  # type: ignore[arg-type]
    assert "pg_try_advisory_lock" in engine.log[0] and engine.log[1] == "commit"
    lock.release()
    lock.release()  # twice is harmless
    assert "pg_advisory_unlock" in engine.log[2] and engine.log[-1] == "close"
    assert sum("unlock" in entry for entry in engine.log) == 1


def test_a_held_advisory_lock_is_store_in_use() -> None:
    engine = _FakeEngine(granted=False)
    with pytest.raises(StoreInUse, match=r"postgresql://u:\*\*\*@h/db"):
        AdvisoryLock(engine, "postgresql://u:***@h/db")  # type: ignore[arg-type]
    assert engine.log[-1] == "close"


def _postgres_user() -> str | None:
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (Debian's `postgresql`, driven by psycopg)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL tests need the psycopg package (uv sync installs it)")
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    initdb = shutil.which("initdb") or (str(bins[-1] / "initdb") if bins else None)
    pg_ctl = shutil.which("pg_ctl") or (str(bins[-1] / "pg_ctl") if bins else None)
    if not initdb or not pg_ctl or not Path(initdb).exists():
        pytest.fail("the PostgreSQL tests need a server: apt-get install -y postgresql")
    user = _postgres_user() if os.geteuid() == 0 else None
    run_as = ["runuser", "-u", user, "--"] if user else []
    if os.geteuid() == 0 and not user:
        pytest.fail(
            "PostgreSQL will not run as root: create a 'postgres' user (apt's postgresql does)"
        )
    base = Path(tempfile.mkdtemp(prefix="tierd-pg-"))
    if user:
        shutil.chown(base, user)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "tierd"],
        check=True,
        capture_output=True,
    )
    options = f"-k {base} -p {port} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://tierd:secret-pw@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_two_stores_on_one_database(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    first = Store(postgres_url)
    await first.open()
    await first.create_task(_task())
    second = Store(postgres_url)
    with pytest.raises(StoreInUse) as refused:
        await second.open()
    await second.close()
    assert "secret-pw" not in str(refused.value) and "tierd:***@127.0.0.1" in str(refused.value)
    watcher = create_engine(postgres_url)
    with watcher.connect() as conn:
        states = (
            conn.execute(
                text(
                    "SELECT state FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> "
                    "pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
            .scalars()
            .all()
        )
    watcher.dispose()
    assert "idle in transaction" not in states  # the lock's session is not a long transaction
    await first.close()
    third = Store(postgres_url)
    await third.open()
    assert (await third.get_task("t1")) is not None
    await third.close()


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
