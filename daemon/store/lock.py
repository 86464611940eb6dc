"""One SQLite store, one daemon: a lock beside the database file, held while it is open.

The home's `daemon.lock` stops two daemons on one home, but two homes can name one SQLite
database (the second's `[store] url` pointing at the first's tierd.db). SQLite is the
embedded store of one daemon on one machine (its checkpoints, attachments and worktrees are
in that daemon's home), so the store takes a lock of its own when it opens, and a second
opener gets `StoreInUse`:

- SQLite: an flock on `<database>.lock` beside the database file, found through symlinks so
  that two names of one file take one lock. It is a file of its own because SQLite keeps
  POSIX locks on the database, which flock must not meet (on NFS flock is emulated with
  them). The kernel drops the lock when the process dies, so a killed daemon never leaves
  the store locked; the holder's pid is written in the file for the message.
- PostgreSQL is made to be shared: several daemons open one store, and each task's lease
  (`daemon.store.leases`) says which of them runs it. Only creating or migrating the schema
  is one daemon at a time (`migration_lock`, a session-level advisory lock whose key is
  tierd's, per schema, so two stores in two schemas of one database do not collide).
- any other database, or SQLite in memory: not locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from daemon.store.database import sqlite_path
from daemon.store.errors import StoreInUse, StoreUnavailable, as_store_full

#: The advisory lock's first key: "tier" in ASCII. The second is the schema's hash.
PG_LOCK_KEY = 0x74696572
_PG_LOCK = text("SELECT pg_advisory_lock(:key, hashtext(coalesce(current_schema(), '')))")
_PG_UNLOCK = text("SELECT pg_advisory_unlock(:key, hashtext(coalesce(current_schema(), '')))")


class StoreLock(Protocol):
    """A held lock on a store; `release` is safe to call more than once."""

    def release(self) -> None: ...


class NoLock:
    """For a store that cannot be shared (in memory) or a database tierd cannot lock."""

    def release(self) -> None:
        pass


def lock_file_of(database: Path) -> Path:
    """The lock file of a SQLite database: `<database>.lock`, beside it."""
    return database.with_name(database.name + ".lock")


class FileLock:
    """An flock on the lock file beside a SQLite database."""

    def __init__(self, database: Path) -> None:
        self.path = lock_file_of(database)
        self._where = str(database)
        self._fd: int | None = None
        try:
            # Not inherited by child processes (PEP 446): a tool the daemon runs must not keep
            # the store locked after the daemon is gone.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            full = as_store_full(exc, self._where)
            if full is not None:
                raise full from exc
            raise StoreUnavailable(
                f"cannot create the task store's lock file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreInUse(self._where, holder) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid is only for the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The file stays: removing it would let a third opener lock a new file while a
            # second still waits on the old one.
            os.close(fd)  # closing drops the flock


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f"pid {pid}"
    return ""


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held while the schema is created or migrated: on PostgreSQL, where several daemons
    share one store, two starting at once must not both create the tables (a session-level
    advisory lock on a connection of its own, waited for; the server drops it if the
    daemon dies). Nothing to hold elsewhere: a SQLite store has one daemon (its `FileLock`)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(_PG_LOCK, {"key": PG_LOCK_KEY})
        # The lock belongs to the session: end the transaction, or the connection would sit
        # "idle in transaction" while the migration runs on others.
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(_PG_UNLOCK, {"key": PG_LOCK_KEY})
                conn.commit()
            except DBAPIError:
                conn.invalidate()  # the session is gone, and its lock with it


def lock_store(url: str) -> StoreLock:
    """Take the store's lock, or raise StoreInUse naming the store (its password hidden)."""
    database = sqlite_path(url)
    if database is not None:
        return FileLock(database)
    return NoLock()
