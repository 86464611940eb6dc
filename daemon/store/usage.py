"""The store's usage log: one row per model call (tokens, cost, latency, outcome) of a task."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from daemon.store import statements as sql
from daemon.store.events import NewEvent
from daemon.store.tables import UsageRow
from daemon.store.thread import StoreThread


class UsageLog(StoreThread):
    """Reads and writes of the `usage` table."""

    async def record_usage(
        self, row: UsageRow, event: tuple[str, dict[str, Any]] | None = None
    ) -> None:
        """Add a usage row; with `event` (type, data), that event in the same transaction."""

        def work() -> NewEvent | None:
            with self._tx() as conn:
                sql.insert_usage(conn, row)
                return sql.insert_event(conn, row.task_id, *event) if event else None

        await self._write(work, lambda ev: [ev])

    async def usage_of(self, task_id: str) -> list[UsageRow]:
        def work() -> list[UsageRow]:
            with self._session() as s:
                q = select(UsageRow).where(UsageRow.task_id == task_id)
                return list(s.exec(q.order_by(col(UsageRow.id))))

        return await self._run(work)
