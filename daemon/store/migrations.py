"""The schema's version, kept in the `meta` table, and the steps that bring an older one up.

An older database is migrated at start, one version at a time; a newer one (from a later
tierd) is refused with a message rather than silently misread. A database with tierd's tables
but no version was not made by tierd and is refused too.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from daemon.store.tables import MetaRow

SCHEMA_VERSION = 7


class SchemaTooNew(RuntimeError):
    pass


def _v1_to_v2(engine: Engine) -> None:
    # v2 added the step memo and the questions table; existing rows are untouched.
    tables = SQLModel.metadata.tables
    SQLModel.metadata.create_all(engine, tables=[tables["steps"], tables["questions"]])


def _v2_to_v3(engine: Engine) -> None:
    # v3 added tasks.idempotency_key. SQLite cannot add a UNIQUE column, so the column is added
    # plain and made unique by the same unique index a new database gets from the model.
    # Each step is skipped when already done: the version is recorded in a later transaction,
    # so a crash between the two must not leave a database that fails this step forever.
    with engine.begin() as conn:
        found = inspect(conn)
        if "idempotency_key" not in {c["name"] for c in found.get_columns("tasks")}:
            conn.execute(text("ALTER TABLE tasks ADD COLUMN idempotency_key VARCHAR"))
        have = {i["name"] for i in found.get_indexes("tasks")}
        for index in SQLModel.metadata.tables["tasks"].indexes:
            if list(index.columns.keys()) == ["idempotency_key"] and index.name not in have:
                index.create(conn)


def _v3_to_v4(engine: Engine) -> None:
    # v4 added the code facts of code tasks: tasks.code_json and streams.code_json, nullable
    # (NULL: a text task or stream). Added at the end of each table, where a new database has
    # them too; each skipped when already there (see _v2_to_v3).
    with engine.begin() as conn:
        found = inspect(conn)
        for table in ("tasks", "streams"):
            if "code_json" not in {c["name"] for c in found.get_columns(table)}:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN code_json VARCHAR"))


def _v4_to_v5(engine: Engine) -> None:
    # v5 added the attachments table (a task's files); existing tasks have none.
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables["attachments"]])


def _v5_to_v6(engine: Engine) -> None:
    # v6 added usage.cached_tokens: the prompt tokens a provider's prompt cache served. Rows
    # from before read 0 (nothing known cached), which is what they were billed as. NOT NULL
    # with a default, at the end of the table like a new database's; skipped when already
    # there (see _v2_to_v3).
    with engine.begin() as conn:
        if "cached_tokens" not in {c["name"] for c in inspect(conn).get_columns("usage")}:
            conn.execute(
                text("ALTER TABLE usage ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT '0'")
            )


def _v6_to_v7(engine: Engine) -> None:
    # v7 added task leases (tasks.lease_owner, tasks.lease_expires_at), for several daemons on
    # one store. NULL in the rows from before: nobody holds them, the next daemon claims them.
    with engine.begin() as conn:
        have = {c["name"] for c in inspect(conn).get_columns("tasks")}
        if "lease_owner" not in have:
            conn.execute(text("ALTER TABLE tasks ADD COLUMN lease_owner VARCHAR"))
        if "lease_expires_at" not in have:
            conn.execute(text("ALTER TABLE tasks ADD COLUMN lease_expires_at FLOAT"))


#: from-version -> the function that moves the schema one version up.
MIGRATIONS: dict[int, Callable[[Engine], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
}


def migrate(engine: Engine) -> None:
    """Create a new database's tables, or bring an older one up to `SCHEMA_VERSION`.

    Raises SchemaTooNew for a database newer than this tierd or not made by tierd.
    """
    tables = set(inspect(engine).get_table_names())
    if "meta" not in tables:
        if tables & {"tasks", "events"}:
            raise SchemaTooNew(
                "the database has tierd tables but no schema version: "
                "it was not made by tierd; point store.url elsewhere"
            )
        SQLModel.metadata.create_all(engine)
        _set_version(engine, SCHEMA_VERSION)
        return
    with Session(engine) as s:
        row = s.get(MetaRow, "schema_version")
        version = int(row.value) if row else 1
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database schema is version {version}, newer than this tierd understands "
            f"({SCHEMA_VERSION}): upgrade tierd, or point store.url at another database"
        )
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](engine)
        version += 1
        _set_version(engine, version)


def _set_version(engine: Engine, version: int) -> None:
    with Session(engine) as s:
        s.merge(MetaRow(key="schema_version", value=str(version)))
        s.commit()
