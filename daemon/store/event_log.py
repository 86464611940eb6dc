"""The store's event log: events appended with ever-increasing ids, read back after an id.

Ids are never reused (AUTOINCREMENT), so a reader that comes back with the last id it saw
reads exactly what it missed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from daemon.store import statements as sql
from daemon.store.events import NewEvent, event_to_dict
from daemon.store.tables import EventRow
from daemon.store.thread import StoreThread


class EventLog(StoreThread):
    """Reads and writes of the `events` table."""

    async def append_event(self, task_id: str | None, type_: str, data: dict[str, Any]) -> NewEvent:
        def work() -> NewEvent:
            with self._tx() as conn:
                return sql.insert_event(conn, task_id, type_, data)

        return await self._write(work, lambda ev: [ev])

    async def events_after(
        self,
        last_id: int,
        task_id: str | None = None,
        limit: int = 500,
        *,
        type_: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` events with ids above `last_id`, oldest first (of one task, if given;
        of one type, if given: a reader that wants the state changes alone does not load the
        task's hundreds of other events)."""

        def work() -> list[dict[str, Any]]:
            with self._session() as s:
                q = select(EventRow).where(col(EventRow.id) > last_id)
                if task_id is not None:
                    q = q.where(EventRow.task_id == task_id)
                if type_ is not None:
                    q = q.where(EventRow.type == type_)
                rows = s.exec(q.order_by(col(EventRow.id)).limit(limit))
                return [event_to_dict(r) for r in rows]

        return await self._run(work)

    async def last_event_id(self) -> int:
        def work() -> int:
            with self._session() as s:
                return int(s.exec(select(func.max(EventRow.id))).one() or 0)

        return await self._run(work)
