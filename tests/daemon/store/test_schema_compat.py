"""The database format stays compatible: a database written by an earlier tierd (schema
version 3, the store before it was split into modules) opens, reads and is migrated, and a new
database has exactly the shape of the current version (7: 6, usage.cached_tokens on top of 5,
the attachments table on top of 4, the code facts of code tasks; plus the task leases).

`V3_SCHEMA` is copied from `sqlite_master` of a database that the earlier store created;
`V4_SCHEMA` is that plus what the v3 -> v4 migration adds, `V5_SCHEMA` that plus v4 -> v5,
`V6_SCHEMA` that plus v5 -> v6, `V7_SCHEMA` that plus v6 -> v7. A
change to the tables must come with a new `SCHEMA_VERSION`, a migration and a snapshot of its
own, tested from the one before.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from daemon.store.store import SCHEMA_VERSION, Store, TaskRow, UsageRow

V3_SCHEMA = [
    "CREATE TABLE events (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, task_id VARCHAR, "
    "type VARCHAR NOT NULL, data_json VARCHAR NOT NULL, created_at FLOAT NOT NULL)",
    "CREATE INDEX ix_events_task_id ON events (task_id)",
    "CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (key))",
    "CREATE TABLE questions (id VARCHAR NOT NULL, task_id VARCHAR NOT NULL, stream_id VARCHAR, "
    "question VARCHAR NOT NULL, answer VARCHAR, created_at FLOAT NOT NULL, answered_at FLOAT, "
    "PRIMARY KEY (id))",
    "CREATE INDEX ix_questions_task_id ON questions (task_id)",
    "CREATE TABLE steps (task_id VARCHAR NOT NULL, key VARCHAR NOT NULL, "
    "value_json VARCHAR NOT NULL, created_at FLOAT NOT NULL, PRIMARY KEY (task_id, key))",
    "CREATE TABLE tasks (id VARCHAR NOT NULL, state VARCHAR NOT NULL, goal VARCHAR NOT NULL, "
    "context VARCHAR NOT NULL, options_json VARCHAR NOT NULL, created_at FLOAT NOT NULL, "
    "updated_at FLOAT NOT NULL, result VARCHAR, report_json VARCHAR, error VARCHAR, "
    "plan_json VARCHAR, settings_json VARCHAR, idempotency_key VARCHAR, PRIMARY KEY (id))",
    "CREATE UNIQUE INDEX ix_tasks_idempotency_key ON tasks (idempotency_key)",
    "CREATE INDEX ix_tasks_state ON tasks (state)",
    "CREATE TABLE streams (id INTEGER NOT NULL, task_id VARCHAR NOT NULL, "
    "stream_id VARCHAR NOT NULL, parent_id VARCHAR, title VARCHAR NOT NULL, "
    "spec_json VARCHAR NOT NULL, state VARCHAR NOT NULL, output VARCHAR, verdict VARCHAR, "
    "reason VARCHAR, rounds INTEGER NOT NULL, depth INTEGER NOT NULL, started_at FLOAT, "
    "ended_at FLOAT, PRIMARY KEY (id), UNIQUE (task_id, stream_id), "
    "FOREIGN KEY(task_id) REFERENCES tasks (id))",
    "CREATE INDEX ix_streams_task_id ON streams (task_id)",
    "CREATE TABLE usage (id INTEGER NOT NULL, task_id VARCHAR NOT NULL, stream_id VARCHAR, "
    "role VARCHAR NOT NULL, purpose VARCHAR NOT NULL, model VARCHAR NOT NULL, "
    "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
    "cost_usd FLOAT NOT NULL, latency_s FLOAT NOT NULL, outcome VARCHAR NOT NULL, "
    "attempts INTEGER NOT NULL, error VARCHAR, started_at FLOAT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX ix_usage_task_id ON usage (task_id)",
]

#: Version 4: tasks.code_json and streams.code_json (nullable), at the end of their tables.
V4_SCHEMA = [
    statement.replace(
        "idempotency_key VARCHAR, PRIMARY KEY (id))",
        "idempotency_key VARCHAR, code_json VARCHAR, PRIMARY KEY (id))",
    ).replace(
        "ended_at FLOAT, PRIMARY KEY (id), UNIQUE (task_id, stream_id)",
        "ended_at FLOAT, code_json VARCHAR, PRIMARY KEY (id), UNIQUE (task_id, stream_id)",
    )
    for statement in V3_SCHEMA
]
assert V4_SCHEMA != V3_SCHEMA and sum(s.count("code_json") for s in V4_SCHEMA) == 2

#: Version 5: the attachments table (a task's files), with its index and keys.
V5_SCHEMA = [
    *V4_SCHEMA,
    "CREATE TABLE attachments (id INTEGER NOT NULL, task_id VARCHAR NOT NULL, "
    "position INTEGER NOT NULL, name VARCHAR NOT NULL, media_type VARCHAR NOT NULL, "
    "kind VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, size INTEGER NOT NULL, "
    "folder VARCHAR NOT NULL, text_file VARCHAR, summary VARCHAR NOT NULL, "
    "renders_json VARCHAR NOT NULL, facts_json VARCHAR NOT NULL, created_at FLOAT NOT NULL, "
    "PRIMARY KEY (id), UNIQUE (task_id, position), FOREIGN KEY(task_id) REFERENCES tasks (id))",
    "CREATE INDEX ix_attachments_task_id ON attachments (task_id)",
]

#: Version 6: usage.cached_tokens (prompt tokens a provider's cache served), 0 for old rows.
V6_SCHEMA = [
    statement.replace(
        "started_at FLOAT NOT NULL, PRIMARY KEY (id))",
        "started_at FLOAT NOT NULL, cached_tokens INTEGER DEFAULT '0' NOT NULL, PRIMARY KEY (id))",
    )
    for statement in V5_SCHEMA
]
assert sum(s.count("cached_tokens") for s in V6_SCHEMA) == 1

#: Version 7: task leases (tasks.lease_owner, tasks.lease_expires_at), nullable, at the end.
V7_SCHEMA = [
    statement.replace(
        "code_json VARCHAR, PRIMARY KEY (id))",
        "code_json VARCHAR, lease_owner VARCHAR, lease_expires_at FLOAT, PRIMARY KEY (id))",
    )
    if statement.startswith("CREATE TABLE tasks ")
    else statement
    for statement in V6_SCHEMA
]
assert sum(s.count("lease_owner") for s in V7_SCHEMA) == 1

V3_ROWS = [
    "INSERT INTO meta VALUES ('schema_version', '3')",
    "INSERT INTO tasks VALUES ('t-old', 'running', 'the goal', 'ctx', '{\"a\": 1}', 1.0, 2.0, "
    "NULL, NULL, NULL, '{\"streams\": []}', '{\"review\": {}}', 'key-1')",
    "INSERT INTO streams VALUES (1, 't-old', 's1', NULL, 'first', '{}', 'done', 'out', 'pass', "
    "NULL, 1, 0, 1.5, 1.8)",
    "INSERT INTO steps VALUES ('t-old', 'exec:s1:r0:a0', '{\"output\": \"out\"}', 1.8)",
    "INSERT INTO events (task_id, type, data_json, created_at) VALUES "
    '(\'t-old\', \'task.state\', \'{"state": "running", "previous": "planning"}\', 1.2)',
    "INSERT INTO questions VALUES ('q1', 't-old', 's1', 'which?', NULL, 1.6, NULL)",
    "INSERT INTO usage VALUES (1, 't-old', 's1', 'executor', 'execute', 'cheap', 10, 20, "
    "0.001, 0.5, 'ok', 1, NULL, 1.5)",
]


def _shape(db: Path) -> dict[str, Any]:
    """Each table's columns, indexes and foreign keys, as SQLite reports them."""
    conn = sqlite3.connect(db)
    try:
        tables = dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='table' "
                "AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        )
        shape: dict[str, Any] = {}
        for table, sql in sorted(tables.items()):
            columns = [r[1:] for r in conn.execute(f"PRAGMA table_info({table})")]
            indexes = sorted(
                (name, unique, [c[2] for c in conn.execute(f"PRAGMA index_info({name})")])
                for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")
            )
            keys = [r[2:5] for r in conn.execute(f"PRAGMA foreign_key_list({table})")]
            shape[table] = {
                "columns": columns,
                "indexes": indexes,
                "foreign_keys": keys,
                # Event ids are never reused: AUTOINCREMENT is part of the format.
                "autoincrement": "AUTOINCREMENT" in sql.upper(),
            }
        return shape
    finally:
        conn.close()


def _database(db: Path, schema: list[str], rows: list[str]) -> None:
    conn = sqlite3.connect(db)
    for statement in schema + rows:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _v3_database(db: Path) -> None:
    _database(db, V3_SCHEMA, V3_ROWS)


async def test_a_new_database_has_the_shape_of_schema_version_7(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 7, "a new schema version needs a new snapshot and a migration test"
    snapshot, new = tmp_path / "v7.sqlite", tmp_path / "new.sqlite"
    _database(snapshot, V7_SCHEMA, ["INSERT INTO meta VALUES ('schema_version', '7')"])
    store = Store(f"sqlite:///{new}")
    await store.open()
    await store.close()
    assert _shape(new) == _shape(snapshot)


async def test_a_version_3_database_is_migrated_to_the_shape_of_a_new_one(tmp_path: Path) -> None:
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    _v3_database(old)
    assert "code_json" not in str(_shape(old)) and "attachments" not in _shape(old)
    for db in (old, new):
        store = Store(f"sqlite:///{db}")
        await store.open()
        await store.close()
    assert _shape(old) == _shape(new)
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
        # The rows from before are kept, as text tasks and streams (no code facts).
        assert conn.execute("SELECT goal, code_json FROM tasks").fetchall() == [("the goal", None)]
        assert conn.execute("SELECT output, code_json FROM streams").fetchall() == [("out", None)]
    finally:
        conn.close()


async def test_a_version_5_database_gets_cached_tokens_and_keeps_its_usage(
    tmp_path: Path,
) -> None:
    old, new = tmp_path / "v5.sqlite", tmp_path / "new.sqlite"
    v5_rows = [
        "INSERT INTO meta VALUES ('schema_version', '5')",
        "INSERT INTO tasks (id, state, goal, context, options_json, created_at, updated_at) "
        "VALUES ('t-old', 'completed', 'the goal', '', '{}', 1.0, 2.0)",
        *(row for row in V3_ROWS if row.startswith("INSERT INTO usage")),
    ]
    _database(old, V5_SCHEMA, v5_rows)
    assert "cached_tokens" not in str(_shape(old))
    store = Store(f"sqlite:///{old}")
    await store.open()
    (row,) = await store.usage_of("t-old")
    # The row from before reads as nothing cached, and every other field as it was.
    assert (row.model, row.prompt_tokens, row.cached_tokens) == ("cheap", 10, 0)
    await store.record_usage(
        UsageRow(
            task_id="t-old",
            role="orchestrator",
            purpose="review",
            model="premium",
            prompt_tokens=2000,
            cached_tokens=1024,
        )
    )
    assert [u.cached_tokens for u in await store.usage_of("t-old")] == [0, 1024]
    await store.close()
    fresh = Store(f"sqlite:///{new}")
    await fresh.open()
    await fresh.close()
    assert _shape(old) == _shape(new)
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        conn.close()


async def test_a_version_6_database_gets_free_leases_on_its_tasks(tmp_path: Path) -> None:
    old, new = tmp_path / "v6.sqlite", tmp_path / "new.sqlite"
    _database(
        old,
        V6_SCHEMA,
        [
            "INSERT INTO meta VALUES ('schema_version', '6')",
            "INSERT INTO tasks (id, state, goal, context, options_json, created_at, updated_at) "
            "VALUES ('t-old', 'running', 'the goal', '', '{}', 1.0, 2.0)",
        ],
    )
    assert "lease_owner" not in str(_shape(old))
    for db in (old, new):
        store = Store(f"sqlite:///{db}")
        await store.open()
        await store.close()
    assert _shape(old) == _shape(new)
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT value FROM meta").fetchone() == ("7",)
        # Nobody holds the task from before: the next daemon claims it.
        assert conn.execute("SELECT goal, lease_owner, lease_expires_at FROM tasks").fetchall() == [
            ("the goal", None, None)
        ]
    finally:
        conn.close()


async def test_a_migrated_database_keeps_code_facts(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    _v3_database(db)
    store = Store(f"sqlite:///{db}")
    await store.open()
    old = await store.get_task("t-old")
    assert old is not None and old.code_json is None
    await store.set_task_code("t-old", {"repo": "/src/app", "base": "HEAD"})
    await store.upsert_stream("t-old", "s1", code_json=json.dumps({"branch": "tierd/t-old/s1"}))
    await store.close()
    # Opened again: the migration is not repeated, and the facts are there.
    store = Store(f"sqlite:///{db}")
    await store.open()
    task = await store.get_task("t-old")
    assert task is not None and json.loads(task.code_json or "") == {
        "repo": "/src/app",
        "base": "HEAD",
    }
    (stream,) = await store.streams_of("t-old")
    assert json.loads(stream.code_json or "") == {"branch": "tierd/t-old/s1"}
    assert stream.output == "out"
    await store.close()


async def test_a_database_written_by_the_previous_store_opens_and_reads(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    _v3_database(db)
    store = Store(f"sqlite:///{db}")
    await store.open()
    task = await store.get_task("t-old")
    assert task is not None and task.goal == "the goal" and task.idempotency_key == "key-1"
    assert (await store.task_by_key("key-1")) is not None
    assert await store.nonterminal_task_ids() == ["t-old"]
    assert [s.stream_id for s in await store.streams_of("t-old")] == ["s1"]
    # The step memo keys of the previous version are found: a finished call is not made again.
    assert await store.get_step("t-old", "exec:s1:r0:a0") == {"output": "out"}
    assert [q.id for q in await store.questions_of("t-old")] == ["q1"]
    assert [u.model for u in await store.usage_of("t-old")] == ["cheap"]
    events = await store.events_after(0, "t-old")
    assert [e["data"]["state"] for e in events] == ["running"]
    # It takes writes too, and event ids go on from where the old ones ended.
    previous, ev = await store.transition("t-old", "reviewing")
    assert previous == "running" and ev is not None and ev.id > events[-1]["id"]
    now = 3.0
    new = TaskRow(id="t-new", state="queued", goal="g", created_at=now, updated_at=now)
    await store.create_task(new)
    assert {t.id for t in await store.list_tasks(None, 10, None)} == {"t-old", "t-new"}
    await store.close()
