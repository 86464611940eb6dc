"""The event record: a row of the `events` table written inside a transaction, and the
`NewEvent` the store announces once that transaction has committed.

A state change and its event are always written in one transaction (`move_task`), so a reader
never sees one without the other.

Event ids must come out in commit order: a follower resumes after the last id it read, so an
event that commits after a higher id would never reach it. One daemon writes from one thread,
which gives that order; daemons sharing a PostgreSQL store take a transaction lock before each
event (`order_events`), so that between daemons too ids are drawn and committed in turn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from daemon.store.states import check_move
from daemon.store.tables import EventRow, TaskRow

#: The event-order lock's first key: "tiev" in ASCII; the second is the schema's hash, so two
#: stores in two schemas of one database do not wait for each other.
EVENT_ORDER_KEY = 0x74696576
_ORDER = text("SELECT pg_advisory_xact_lock(:key, hashtext(coalesce(current_schema(), '')))")


def order_events(conn: Connection) -> None:
    """Before an event is inserted in `conn`'s transaction: on PostgreSQL, wait until no other
    transaction that inserts events is open, and hold that until this one ends. The caller's
    other writes come first, so that no transaction holding it waits for a row lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(_ORDER, {"key": EVENT_ORDER_KEY})


@dataclass
class NewEvent:
    id: int
    task_id: str | None
    type: str
    data: dict[str, Any]
    created_at: float
    #: Written by another daemon sharing the store (read back by `EventLog.follow_others`).
    foreign: bool = False


def event_to_dict(row: EventRow) -> dict[str, Any]:
    """An event row as the API and the event feed show it."""
    return {
        "id": row.id,
        "task_id": row.task_id,
        "type": row.type,
        "data": json.loads(row.data_json),
        "created_at": row.created_at,
    }


def add_event(s: Session, task_id: str | None, type_: str, data: dict[str, Any]) -> EventRow:
    """Add an event to the caller's transaction; its id is known once that commits."""
    if s.get_bind().dialect.name == "postgresql":
        s.flush()  # the transaction's other writes first (see order_events)
        order_events(s.connection())
    row = EventRow(task_id=task_id, type=type_, data_json=json.dumps(data), created_at=time.time())
    s.add(row)
    return row


def as_new(row: EventRow) -> NewEvent:
    """A committed event row, as announced to the store's listeners."""
    assert row.id is not None
    return NewEvent(row.id, row.task_id, row.type, json.loads(row.data_json), row.created_at)


def as_new_or_none(row: EventRow | None) -> NewEvent | None:
    return None if row is None else as_new(row)


def move_task(s: Session, task: TaskRow, new_state: str, reason: str) -> EventRow:
    """A checked state change with its event, inside the caller's transaction."""
    previous = task.state
    check_move(previous, new_state)
    task.state = new_state
    task.updated_at = time.time()
    s.add(task)
    return add_event(
        s, task.id, "task.state", {"state": new_state, "previous": previous, "reason": reason}
    )
