"""The store's hot paths as SQLAlchemy Core statements, built once and bound per call.

A running task writes a few rows per model call (its stream's row and event, the step memo,
the usage row) and reads its memo before each call. Through the ORM each of those cost about
1.5 ms of CPU (a session, the unit of work, identity map, instance state); the same statement
built once here and bound with parameters costs about a fifth of that (measured side by
side; `tierd bench` reports the daemon's CPU per stream).
The statements are plain Core, so they run on SQLite and PostgreSQL alike.

Every function takes the open transaction's connection: the caller (`StoreThread._tx`)
decides what commits together.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update
from sqlmodel import SQLModel

from daemon.store.events import NewEvent, order_events
from daemon.store.tables import AttachmentRow, EventRow, StepRow, StreamRow, TaskRow, UsageRow

__all__ = [
    "attachment_rows",
    "get_step",
    "get_task",
    "get_task_locked",
    "insert_attachments",
    "insert_event",
    "insert_streams",
    "insert_task",
    "insert_usage",
    "put_step",
    "step_keys",
    "stream_rows",
    "task_state",
    "update_stream",
    "update_task",
]


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


_ATTACHMENTS = _table(AttachmentRow)
_EVENTS = _table(EventRow)
_STEPS = _table(StepRow)
_STREAMS = _table(StreamRow)
_TASKS = _table(TaskRow)
_USAGE = _table(UsageRow)

# Bound parameters in a SET clause may not share a column's name, hence the "b_" names.
_EVENT_INSERT = insert(_EVENTS)
_STEP_GET = select(_STEPS.c.value_json).where(
    _STEPS.c.task_id == bindparam("b_task"), _STEPS.c.key == bindparam("b_key")
)
_STEP_UPDATE = (
    update(_STEPS)
    .where(_STEPS.c.task_id == bindparam("b_task"), _STEPS.c.key == bindparam("b_key"))
    .values(value_json=bindparam("b_value"), created_at=bindparam("b_at"))
)
_STEP_INSERT = insert(_STEPS)
_STEP_KEYS = select(_STEPS.c.key).where(_STEPS.c.task_id == bindparam("b_task"))
_ATTACHMENTS_OF = (
    select(_ATTACHMENTS)
    .where(_ATTACHMENTS.c.task_id == bindparam("b_task"))
    .order_by(_ATTACHMENTS.c.position)
)
_STREAM_INSERT = insert(_STREAMS)
_TASK_INSERT = insert(_TASKS)
_ATTACHMENT_INSERT = insert(_ATTACHMENTS)
_STREAMS_OF = select(_STREAMS).where(_STREAMS.c.task_id == bindparam("b_task"))
_TASK_GET = select(_TASKS).where(_TASKS.c.id == bindparam("b_task"))
_TASK_GET_LOCKED = _TASK_GET.with_for_update()
# FOR UPDATE (PostgreSQL; SQLite has one writer anyway): the state a move is checked against
# must be the one it replaces, even when another daemon sharing the store moves the task too.
_TASK_STATE = select(_TASKS.c.state).where(_TASKS.c.id == bindparam("b_task")).with_for_update()
_USAGE_INSERT = insert(_USAGE)


def _defaults(model: type[SQLModel]) -> dict[str, Any]:
    """The model's Python-side defaults: what an ORM insert would have filled in."""
    return {
        name: field.default
        for name, field in model.model_fields.items()
        if not field.is_required() and name != "id"
    }


_STREAM_DEFAULTS = _defaults(StreamRow)


def insert_event(
    conn: Connection, task_id: str | None, type_: str, data: dict[str, Any]
) -> NewEvent:
    """Append an event; its id is final once the caller's transaction commits."""
    order_events(conn)
    created_at = time.time()
    result = conn.execute(
        _EVENT_INSERT,
        {
            "task_id": task_id,
            "type": type_,
            "data_json": json.dumps(data),
            "created_at": created_at,
        },
    )
    event_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    assert event_id is not None
    return NewEvent(int(event_id), task_id, type_, data, created_at)


def get_step(conn: Connection, task_id: str, key: str) -> str | None:
    """The memo stored under `key` as JSON text, or None."""
    return conn.execute(_STEP_GET, {"b_task": task_id, "b_key": key}).scalar_one_or_none()


def step_keys(conn: Connection, task_id: str) -> set[str]:
    """The keys of every step the task has stored."""
    return set(conn.execute(_STEP_KEYS, {"b_task": task_id}).scalars())


def put_step(conn: Connection, task_id: str, key: str, value: Any) -> None:
    """Store (or replace) the memo under `key`."""
    value_json, at = json.dumps(value), time.time()
    params = {"b_task": task_id, "b_key": key, "b_value": value_json, "b_at": at}
    if conn.execute(_STEP_UPDATE, params).rowcount == 0:
        conn.execute(
            _STEP_INSERT,
            {"task_id": task_id, "key": key, "value_json": value_json, "created_at": at},
        )


def _columns(table: Table, fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of `fields`, sorted (one cached UPDATE per set); an unknown one is refused
    by name before anything is written."""
    unknown = set(fields) - set(table.c.keys())
    if unknown:
        raise AttributeError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    return tuple(sorted(fields))


@functools.lru_cache(maxsize=64)
def _stream_update(names: tuple[str, ...]) -> Update:
    """The UPDATE of these columns of one stream (built once per set of columns)."""
    return (
        update(_STREAMS)
        .where(
            _STREAMS.c.task_id == bindparam("b_task"), _STREAMS.c.stream_id == bindparam("b_sid")
        )
        .values({name: bindparam(f"b_{name}") for name in names})
    )


def update_stream(
    conn: Connection, task_id: str, stream_id: str, fields: Mapping[str, Any]
) -> None:
    """Update the stream's row with `fields`; create it (with the defaults) if it is new."""
    names = _columns(_STREAMS, fields)
    if names:
        params = {f"b_{name}": fields[name] for name in names}
        params.update(b_task=task_id, b_sid=stream_id)
        if conn.execute(_stream_update(names), params).rowcount:
            return
    elif conn.execute(
        select(_STREAMS.c.id).where(
            _STREAMS.c.task_id == task_id, _STREAMS.c.stream_id == stream_id
        )
    ).first():
        return
    insert_streams(conn, task_id, [{"stream_id": stream_id, **fields}])


def insert_streams(conn: Connection, task_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert new streams' rows (each a mapping with at least `stream_id`)."""
    values = [{**_STREAM_DEFAULTS, **row, "task_id": task_id} for row in rows]
    if values:
        conn.execute(_STREAM_INSERT, values)


def stream_rows(conn: Connection, task_id: str) -> list[StreamRow]:
    """The task's streams in creation order."""
    result = conn.execute(_STREAMS_OF.order_by(_STREAMS.c.id), {"b_task": task_id})
    return [StreamRow(**row) for row in result.mappings()]


def get_task(conn: Connection, task_id: str) -> TaskRow | None:
    """The task's row, detached (no session holds it)."""
    row = conn.execute(_TASK_GET, {"b_task": task_id}).mappings().first()
    return None if row is None else TaskRow(**row)


def get_task_locked(conn: Connection, task_id: str) -> TaskRow | None:
    """The task's row, locked until the transaction ends (PostgreSQL; SQLite has one writer
    anyway): a move decided on it replaces the state it read, even when another daemon
    sharing the store moves the task too."""
    row = conn.execute(_TASK_GET_LOCKED, {"b_task": task_id}).mappings().first()
    return None if row is None else TaskRow(**row)


def attachment_rows(conn: Connection, task_id: str) -> list[AttachmentRow]:
    """The task's attachments in the order they were submitted."""
    result = conn.execute(_ATTACHMENTS_OF, {"b_task": task_id})
    return [AttachmentRow(**row) for row in result.mappings()]


def task_state(conn: Connection, task_id: str) -> str | None:
    """The task's state, or None when there is no such task."""
    return conn.execute(_TASK_STATE, {"b_task": task_id}).scalar_one_or_none()


@functools.lru_cache(maxsize=64)
def _task_update(names: tuple[str, ...]) -> Update:
    """The UPDATE of these columns of one task (built once per set of columns)."""
    return (
        update(_TASKS)
        .where(_TASKS.c.id == bindparam("b_task"))
        .values({name: bindparam(f"b_{name}") for name in names})
    )


def update_task(conn: Connection, task_id: str, fields: Mapping[str, Any]) -> bool:
    """Set the task's `fields`; False when there is no such task."""
    names = _columns(_TASKS, fields)
    params = {f"b_{name}": fields[name] for name in names}
    params["b_task"] = task_id
    return bool(conn.execute(_task_update(names), params).rowcount)


def _values(table: Table, row: SQLModel) -> dict[str, Any]:
    """Every column of `row` but an id the database assigns."""
    return {
        name: getattr(row, name)
        for name in table.c.keys()
        if not (name == "id" and getattr(row, name) is None)
    }


def insert_task(conn: Connection, row: TaskRow) -> None:
    """Add a new task's row as it is (its fields hold the model's defaults already)."""
    conn.execute(_TASK_INSERT, _values(_TASKS, row))


def insert_attachments(conn: Connection, rows: Iterable[AttachmentRow]) -> None:
    """Add attachment rows (after their task: they refer to it)."""
    values = [_values(_ATTACHMENTS, row) for row in rows]
    if values:
        conn.execute(_ATTACHMENT_INSERT, values)


def insert_usage(conn: Connection, row: UsageRow) -> None:
    """Add one usage row (every column the table has, from the row's fields)."""
    values = {name: getattr(row, name) for name in _USAGE.c.keys() if name != "id"}
    conn.execute(_USAGE_INSERT, values)
