"""The durable task store: sqlmodel tables on SQLite (WAL) or any SQLAlchemy URL.

All database work runs on one dedicated thread, so the event loop never blocks on SQLite and
writes are serialised (event ids come out in commit order). A state change and its event are
written in one transaction: a reader never sees one without the other.

The schema is versioned in the `meta` table. An older database is migrated at start; a newer
one (from a later tierd) is refused with a message rather than silently misread.

This module is the store's front door: `Store` gathers the queries, grouped by subject in
their own modules, and the names other packages use are importable from here.

- `tables`: the tables; `migrations`: the schema version and its upgrades;
  `database`: the engine and SQLite's settings; `thread`: the store's own thread;
  `lock`: one daemon per SQLite database; `leases`: which daemon runs a task;
  `errors`: the store's own errors (in use, disk full); `events`: the event record;
- the queries: `tasks`, `event_log`, `streams` (with the step memo), `usage`,
  `questions` (answers and approvals), `attachments` (a task's files), `deletion` (an
  ended task's rows, all at once).
"""

from __future__ import annotations

from daemon.store.attachments import AttachmentQueries
from daemon.store.database import redact_url
from daemon.store.deletion import TASK_DELETED, DeletedRows, TaskDeletion, TaskNotEnded
from daemon.store.errors import StoreError, StoreFull, StoreInUse, StoreUnavailable
from daemon.store.event_log import EventLog
from daemon.store.events import NewEvent, event_to_dict
from daemon.store.leases import Lease, LeaseQueries
from daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew
from daemon.store.questions import HumanInput
from daemon.store.streams import StreamQueries
from daemon.store.tables import (
    AttachmentRow,
    EventRow,
    MetaRow,
    QuestionRow,
    StepRow,
    StreamRow,
    TaskRow,
    UsageRow,
)
from daemon.store.tasks import RunStart, TaskQueries
from daemon.store.usage import UsageLog

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TASK_DELETED",
    "AttachmentRow",
    "DeletedRows",
    "EventRow",
    "Lease",
    "MetaRow",
    "NewEvent",
    "QuestionRow",
    "RunStart",
    "SchemaTooNew",
    "StepRow",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreInUse",
    "StoreUnavailable",
    "StreamRow",
    "TaskNotEnded",
    "TaskRow",
    "UsageRow",
    "event_to_dict",
    "redact_url",
]


class Store(
    TaskQueries,
    StreamQueries,
    EventLog,
    UsageLog,
    HumanInput,
    AttachmentQueries,
    TaskDeletion,
    LeaseQueries,
):
    """Async facade over the database; every method runs on the store's own thread."""
