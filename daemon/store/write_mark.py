"""The store's write mark: a value that changes whenever a row of the database changes.

A view built from the store (task/get's answer, kept by `daemon.api.detail_cache`) stays
right for as long as this mark is what it was when its reads began, so it can be kept and
served again without reading the store. The mark is SQLite's own count of the rows each
connection has inserted, updated or deleted (`total_changes`), summed over every connection
of the process, so no write of the store's (a state change, a stream's output, a question, a
code task's facts, raw SQL, a deletion) can be missed by a query that forgets to say so;
a write to some other SQLite database only costs a view one rebuild. Reads leave it alone.

It costs the store nothing per statement: the connections are followed through the pool's
own events, when one is opened and when one is closed (its count then kept in the sum), and
the counts are read only when the mark is asked for. SQLAlchemy's connection events would
say the same at each commit, but any listener on them makes every statement pay for the
event machinery (measured: a quarter more CPU per store write).

A row's count moves when its statement runs, before the commit. The store runs every
statement on its one thread (`daemon.store.thread`), so a read queued after the mark moved
runs after the writing transaction and sees it; a read beside it on another thread could
miss it while seeing the new mark, which is why every reader must stay on the store's thread.
A database that keeps no such count (PostgreSQL) gives no mark (None): nothing is kept.

The pool's events must be listened to before the store opens its first connection: the API
imports this module before the daemon starts.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

__all__ = ["write_mark"]

_lock = threading.Lock()
#: The open SQLite connections, by id, and the sum of the counts of those since closed.
_live: dict[int, Any] = {}
_retired = 0
#: Moves when a connection's count could not be read (closed behind the pool's back): its
#: last count is unknown, so every mark taken before is different from every one after.
_epoch = 0
#: Connections to a database without a count of changed rows are open.
_uncounted = 0


def _count_of(dbapi_connection: Any) -> int | None:
    changes = getattr(dbapi_connection, "total_changes", None)
    return changes if isinstance(changes, int) else None


def write_mark() -> tuple[int, int] | None:
    """A value that differs from every earlier one once any row has changed; None when a
    database that cannot say so is in use."""
    global _epoch, _retired
    with _lock:
        if _uncounted:
            return None
        total = _retired
        for key, conn in list(_live.items()):
            try:
                total += conn.total_changes
            except Exception:  # closed without the pool: forget it, and all marks before
                del _live[key]
                _epoch += 1
        return _epoch, total


@event.listens_for(Pool, "connect")
def _connected(dbapi_connection: Any, _record: Any) -> None:
    global _uncounted
    with _lock:
        if _count_of(dbapi_connection) is None:
            _uncounted += 1
        else:
            _live[id(dbapi_connection)] = dbapi_connection


def _closing(dbapi_connection: Any) -> None:
    global _epoch, _retired, _uncounted
    with _lock:  # before the connection closes: its count is read, then it is gone
        if _live.pop(id(dbapi_connection), None) is None:
            if _count_of(dbapi_connection) is None:
                _uncounted = max(0, _uncounted - 1)
            return
        try:
            _retired += dbapi_connection.total_changes
        except Exception:
            _epoch += 1


@event.listens_for(Pool, "close")
def _closed(dbapi_connection: Any, _record: Any) -> None:
    _closing(dbapi_connection)


@event.listens_for(Pool, "close_detached")
def _closed_detached(dbapi_connection: Any) -> None:
    _closing(dbapi_connection)
