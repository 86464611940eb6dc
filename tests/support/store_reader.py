"""Reading a test daemon's store from outside, on SQLite or PostgreSQL alike.

A test looks at what a daemon wrote (its events, steps, every row) after stopping or killing
it. On SQLite that is a read-only copy of the home's tierd.db with its WAL (a live daemon's
files are never opened for writing); on PostgreSQL (TIERD_TEST_STORE=postgres, or a home
whose `[store] url` names one) it is the database itself, which outlives every daemon.
Parameters are written `?` in both.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.engine.checkpoints_pg import pg_conninfo

__all__ = ["copy_sqlite", "pg_url", "query", "tables"]


def pg_url(home: Path) -> str | None:
    """The home's PostgreSQL store as a libpq URL, else None (its store is SQLite)."""
    config = home / "config.toml"
    text = config.read_text() if config.exists() else ""
    url = str(tomllib.loads(text).get("store", {}).get("url", ""))
    return pg_conninfo(url) if url.startswith("postgresql") else None


def copy_sqlite(src: Path, dest_dir: Path) -> Path:
    """Copy a SQLite file with its WAL and shm, so reading it never touches the original."""
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(src) + suffix)
        if f.exists():
            shutil.copy2(f, dest_dir / (src.name + suffix))
    return dest_dir / src.name


def query(home: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the home's store."""
    url = pg_url(home)
    if url is not None:
        import psycopg

        with psycopg.connect(url) as pg:
            return [tuple(r) for r in pg.execute(sql.replace("?", "%s"), tuple(params))]
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(copy_sqlite(home / "tierd.db", Path(tmp)))
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()


def tables(home: Path) -> list[str]:
    """Every table of the home's store (on PostgreSQL, LangGraph's checkpoint tables too)."""
    if pg_url(home) is not None:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return sorted(str(r[0]) for r in query(home, sql))
