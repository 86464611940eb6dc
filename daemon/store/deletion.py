"""Deleting an ended task's rows: every table keyed by its id, in one transaction with the
check that it has ended.

The tables are found from the schema itself (`keyed_by_task`: every table with a `task_id`
column), so a table added later is deleted from without anyone remembering to. The check and
the deletion share the transaction on the store's single thread: of two racing deletions one
removes the task and the other finds it gone, and a task is never deleted half.

What is left is one `task.deleted` event with the task's id (`TASK_DELETED`): no goal, no
content, only what the deletion removed and, for a code task, its repository and the branch
that stays the user's. It ends a client's live stream of the task, tells a client resuming
the event log that the task is gone, and lets the next start finish a deletion a crash cut
short (`deleted_tasks`: the worktrees and branches are removed after the commit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete
from sqlmodel import SQLModel, select

from daemon.store.events import NewEvent, add_event, as_new
from daemon.store.states import TERMINAL, TaskState
from daemon.store.tables import EventRow, TaskRow
from daemon.store.thread import StoreThread

__all__ = ["TASK_DELETED", "DeletedRows", "TaskDeletion", "TaskNotEnded", "keyed_by_task"]

#: The type of the event that says a task was deleted (the one row of it that stays).
TASK_DELETED = "task.deleted"


class TaskNotEnded(RuntimeError):
    """The task is not completed, failed or canceled: it is not deleted."""

    def __init__(self, task_id: str, state: str) -> None:
        super().__init__(f"task {task_id} is {state}")
        self.task_id = task_id
        self.state = state


@dataclass(frozen=True)
class DeletedRows:
    """What one deletion removed from the store."""

    task_id: str
    #: The state the task had ended in.
    state: str
    #: Rows removed per table, the task's own row included ("tasks": 1).
    rows: dict[str, int]
    #: The task's code facts (None for a text task): what is left to remove in its repository.
    code_json: str | None
    #: The event that says so (announced once committed).
    event: NewEvent | None = field(default=None, compare=False)


def keyed_by_task() -> list[Table]:
    """Every table with a `task_id` column, those referring to others first (the task's own
    row goes last: foreign keys are on)."""
    tables = SQLModel.metadata.sorted_tables
    return [t for t in reversed(tables) if "task_id" in t.c and t.name != TaskRow.__tablename__]


def _tombstone(row: TaskRow, rows: dict[str, int]) -> dict[str, Any]:
    """The deleted task's event: what went, and for a code task what the next start needs to
    finish the job (its repository, the branch that stays)."""
    data: dict[str, Any] = {"task_id": row.id, "state": row.state, "rows": rows}
    code = json.loads(row.code_json) if row.code_json else {}
    if isinstance(code, dict) and code.get("repo"):
        applied = code.get("applied") or {}
        result = code.get("result") or {}
        kept = result.get("branch") if applied.get("how") == "branch" else None
        data["code"] = {"repo": code["repo"], "kept_branch": kept}
    return data


class TaskDeletion(StoreThread):
    """Deleting an ended task, and the record of deleted tasks."""

    async def delete_ended_task(self, task_id: str) -> DeletedRows:
        """Delete the task's rows in every table, if it has ended, with its `task.deleted`
        event; in one transaction.

        Raises KeyError when there is no such task (a racing deletion came first) and
        TaskNotEnded, changing nothing, when it is live.
        """

        def work() -> DeletedRows:
            with self._session() as s:
                row = s.get(TaskRow, task_id, with_for_update=True)
                if row is None:
                    raise KeyError(task_id)
                if TaskState(row.state) not in TERMINAL:
                    raise TaskNotEnded(task_id, row.state)
                rows: dict[str, int] = {}
                for table in keyed_by_task():
                    done = s.connection().execute(delete(table).where(table.c.task_id == task_id))
                    rows[table.name] = done.rowcount
                s.delete(row)
                rows[TaskRow.__tablename__] = 1
                ev = add_event(s, task_id, TASK_DELETED, _tombstone(row, rows))
                s.commit()
                return DeletedRows(task_id, row.state, rows, row.code_json, as_new(ev))

        return await self._write(work, lambda gone: [gone.event])

    async def deleted_tasks(self) -> dict[str, dict[str, Any]]:
        """Every task deleted from this store: id -> its `task.deleted` event's data."""

        def work() -> dict[str, dict[str, Any]]:
            with self._session() as s:
                q = select(EventRow.task_id, EventRow.data_json).where(
                    EventRow.type == TASK_DELETED
                )
                return {t: json.loads(d) for t, d in s.exec(q) if t is not None}

        return await self._run(work)
