"""A throwaway PostgreSQL cluster on loopback, for the tests of the PostgreSQL store.

Debian's `postgresql` package gives the server (`initdb`, `pg_ctl`); psycopg drives it. One
cluster per pytest worker (`worker_cluster`, also the `postgres_cluster` fixture), started on
first use and stopped when the worker ends; each test or daemon takes a database of its own
(`PostgresCluster.new_database`), so they never see each other's tables. A missing server or
driver fails the test naming the package, never skips it.

`TIERD_TEST_STORE=postgres` puts every test daemon's store on it (`support.daemon`'s
`write_config`): the API and crash suites run again on PostgreSQL that way (see README).
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["PostgresCluster", "on_postgres", "worker_cluster"]

#: The password in every URL: the cluster trusts loopback, so it is never checked; tests look
#: for it to show that a message or a log hid it.
PASSWORD = "secret-pw"


def _server_binaries() -> tuple[str, str]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    initdb = shutil.which("initdb") or (str(bins[-1] / "initdb") if bins else None)
    pg_ctl = shutil.which("pg_ctl") or (str(bins[-1] / "pg_ctl") if bins else None)
    if not initdb or not pg_ctl or not Path(initdb).exists():
        pytest.fail("the PostgreSQL tests need a server: apt-get install -y postgresql")
    return initdb, pg_ctl


def _run_as() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user apt made."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    pytest.fail("PostgreSQL will not run as root: create a 'postgres' user (apt's postgresql does)")


class PostgresCluster:
    """A cluster in a temporary directory, listening on a free loopback port."""

    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.fail("the PostgreSQL tests need psycopg: uv sync installs the postgres extra")
        initdb, self._pg_ctl = _server_binaries()
        self._run_as = _run_as()
        self.base = Path(tempfile.mkdtemp(prefix="tierd-pg-"))
        if self._run_as:
            shutil.chown(self.base, self._run_as[2])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._data = self.base / "data"
        subprocess.run(
            [*self._run_as, initdb, "-D", str(self._data), "-A", "trust", "-U", "tierd"],
            check=True,
            capture_output=True,
        )
        # fsync off: a test cluster need not survive a power cut, and each commit is faster.
        log = str(self.base / "log")
        options = f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = ["-D", str(self._data), "-o", options, "-l", log, "-w", "start"]
        subprocess.run(
            [*self._run_as, self._pg_ctl, *start],
            check=True,
            capture_output=True,
        )
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this cluster (with a password nobody checks)."""
        return f"postgresql+psycopg://tierd:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"postgresql://tierd@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._run_as, self._pg_ctl, "-D", str(self._data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)


_cluster: PostgresCluster | None = None


def worker_cluster() -> PostgresCluster:
    """This process's cluster, started on first use and stopped when the process exits."""
    global _cluster
    if _cluster is None:
        cluster = _cluster = PostgresCluster()
        owner = os.getpid()
        # Only by the process that started it: a child forked from it must not stop it.
        atexit.register(lambda: os.getpid() == owner and cluster.stop())
    return _cluster


def on_postgres() -> bool:
    """Whether this run puts test daemons' stores on PostgreSQL (TIERD_TEST_STORE=postgres)."""
    store = os.environ.get("TIERD_TEST_STORE", "")
    if store not in ("", "sqlite", "postgres"):
        pytest.fail(f"TIERD_TEST_STORE={store!r}: use sqlite (the default) or postgres")
    return store == "postgres"
