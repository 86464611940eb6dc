"""The store's attachments: the metadata of the files handed over with a task.

They are written with their task, in the transaction that creates it (`tasks.create_task`),
so a task never exists without them nor they without it. Their files live in the task's folder
(`daemon.service.attachments.files`); removing a task's data removes both.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, delete, select

from daemon.store import statements as sql
from daemon.store.tables import AttachmentRow, TaskRow
from daemon.store.thread import StoreThread


class AttachmentQueries(StoreThread):
    """Reads and deletes of the `attachments` table."""

    async def attachments_of(self, task_id: str) -> list[AttachmentRow]:
        """The task's attachments, in the order they were submitted."""

        def work() -> list[AttachmentRow]:
            with self._tx() as conn:
                return sql.attachment_rows(conn, task_id)

        return await self._run(work)

    async def delete_attachments(self, task_id: str) -> int:
        """Forget the task's attachments; how many there were."""

        def work() -> int:
            with self._session() as s:
                found = len(
                    list(s.exec(select(AttachmentRow.id).where(AttachmentRow.task_id == task_id)))
                )
                s.exec(delete(AttachmentRow).where(col(AttachmentRow.task_id) == task_id))
                s.commit()
                return found

        return await self._run(work)

    async def known_task_ids(self, task_ids: Collection[str]) -> set[str]:
        """Those of `task_ids` that name a task in the store."""
        wanted = list(task_ids)

        def work() -> set[str]:
            with self._session() as s:
                found: set[str] = set()
                # In slices: SQLite limits the parameters of one statement.
                for at in range(0, len(wanted), 500):
                    part = wanted[at : at + 500]
                    found.update(s.exec(select(TaskRow.id).where(col(TaskRow.id).in_(part))))
                return found

        return await self._run(work)
