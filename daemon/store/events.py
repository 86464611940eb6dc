"""The event record: a row of the `events` table written inside a transaction, and the
`NewEvent` the store announces once that transaction has committed.

A state change and its event are always written in one transaction (`move_task`), so a reader
never sees one without the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from daemon.store.states import check_move
from daemon.store.tables import EventRow, TaskRow


@dataclass
class NewEvent:
    id: int
    task_id: str | None
    type: str
    data: dict[str, Any]
    created_at: float


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
