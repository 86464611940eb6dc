"""What can go wrong with the database itself, as typed errors the daemon can word and map.

- `StoreInUse`: another tierd daemon (or another `Store` in this process) holds the database;
  two daemons on one store would each run the other's tasks, paying for every call twice.
- `StoreFull`: a write failed because the disk (or the database's own size limit) is full, or
  the disk failed under it. The write was rolled back, nothing half-written is left, and the
  same write succeeds once there is room again: callers may retry it later.
- `StoreUnavailable`: the store cannot be opened at all (its lock file cannot be created).

`as_store_full` recognises a full disk in whatever the database driver raised (SQLite's
SQLITE_FULL and SQLITE_IOERR, PostgreSQL's disk_full, or ENOSPC/EDQUOT from the OS), so no
caller ever sees a bare `OperationalError` for it.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError


class StoreError(RuntimeError):
    """A problem with the database itself (not with a request); the message says what to do."""


class StoreUnavailable(StoreError):
    """The store cannot be opened (its lock file cannot be created, ...)."""


class StoreInUse(StoreError):
    """Another daemon holds this store; `where` names it (a path, or a URL without password)."""

    def __init__(self, where: str, holder: str = "") -> None:
        who = f" ({holder})" if holder else ""
        super().__init__(
            f"the task store {where} is in use by another tierd daemon{who}: two daemons on "
            "one store would run the same tasks twice. Stop that daemon first, or give this "
            "home a store of its own (remove [store] url from its config.toml, or point it at "
            "another database)"
        )
        self.where = where
        self.holder = holder


class StoreFull(StoreError):
    """A write failed for want of disk space (or the disk failed); nothing was written.

    `where` names the store, `reason` is the database's own words ("database or disk is
    full", "disk I/O error", ...). The same write succeeds once space returns.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(
            f"the disk holding the task store {where} is full, or failing ({reason}): "
            "free some space there; tierd writes again as soon as there is room"
        )
        self.where = where
        self.reason = reason


#: SQLite's primary result codes for a full database and for an I/O error (the extended
#: codes, e.g. SQLITE_IOERR_WRITE, carry these in their low byte).
SQLITE_FULL = 13
SQLITE_IOERR = 10
#: PostgreSQL's SQLSTATE for disk_full.
PG_DISK_FULL = "53100"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _full_reason(exc: BaseException | None) -> str | None:
    """The database's words for a full (or failing) disk, or None if `exc` is something else."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return exc.strerror or str(exc)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (SQLITE_FULL, SQLITE_IOERR):
            return str(exc)
        text = str(exc)
        # Without an error code (an older sqlite3 module), SQLite's own messages for them.
        if text.startswith(("database or disk is full", "disk I/O error")):
            return text
        return None
    if getattr(exc, "sqlstate", None) == PG_DISK_FULL or getattr(exc, "pgcode", None) == (
        PG_DISK_FULL
    ):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "disk full"
    return None


def as_store_full(exc: BaseException, where: str) -> StoreFull | None:
    """`exc` as a StoreFull if it says the disk is full (or failing), else None."""
    if isinstance(exc, StoreFull):
        return exc
    reason = _full_reason(exc.orig if isinstance(exc, DBAPIError) else exc)
    return None if reason is None else StoreFull(where, reason)
