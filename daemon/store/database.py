"""Connecting to the database: an SQLAlchemy engine for the store URL, tuned for SQLite.

SQLite gets WAL (readers never wait for the writer), a busy timeout instead of immediate
"database is locked" errors, and foreign keys switched on. Other URLs are used as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import create_engine


def connect(url: str) -> Engine:
    """An engine for `url`; for SQLite, every connection gets the pragmas below."""
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if is_sqlite:
        # The store's one thread uses the connections, but not always the thread that made them.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if is_sqlite:
        sa_event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable in WAL mode except for a power cut; commits stay fast.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def redact_url(url: str) -> str:
    """The store URL without a password, for status output."""
    return make_url(url).render_as_string(hide_password=True)


def shared_store(url: str) -> bool:
    """Whether several daemons may open the store at `url`: PostgreSQL (each task leased to
    one of them); a SQLite store is one daemon's (`daemon.store.lock`)."""
    try:
        return make_url(url).get_backend_name() == "postgresql"
    except ArgumentError:
        return False


def sqlite_path(url: str) -> Path | None:
    """The absolute path of the SQLite file `url` names, symlinks resolved, so that two ways
    of naming one file give one path; None for another database or one held in memory."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename (`?uri=true`)
        if parsed.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:").split("?", 1)[0]
        if not database or database == ":memory:":
            return None
    # Relative to the working directory, as SQLite itself reads it (SQLite expands no `~`).
    return Path(database).resolve()


def store_location(url: str) -> str:
    """Where the store is, for messages: its SQLite file, or its URL without the password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    try:
        return redact_url(url)
    except ArgumentError:
        return "(an invalid store URL)"
