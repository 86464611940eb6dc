"""The store's event log: events appended with ever-increasing ids, read back after an id.

Ids are never reused (AUTOINCREMENT), so a reader that comes back with the last id it saw
reads exactly what it missed.

When daemons share the store, each announces the events the others commit as its own
listeners' (`follow_others`): the event feed, the count of unfinished tasks and the runner
then hear of them as of this daemon's, marked `foreign`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from daemon.store import statements as sql
from daemon.store.events import NewEvent, as_new, event_to_dict
from daemon.store.tables import EventRow
from daemon.store.thread import StoreThread

log = logging.getLogger("tierd.store")

#: Most events one read of `follow_others` takes; the next read goes on from there at once.
FOLLOW_BATCH = 500


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

    async def follow_others(self, every_s: float) -> None:
        """Every `every_s`, announce the events other daemons committed since the last look;
        until cancelled. A failed read is logged and tried again: nothing is skipped."""
        failing = False
        while True:
            try:
                if self._followed is None:  # where to begin: what is there now is known
                    self._followed = await self.last_event_id()
                else:
                    while await self.announce_others() == FOLLOW_BATCH:
                        pass
            except Exception as exc:
                if not failing:
                    log.warning("reading other daemons' events failed (tried again): %s", exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(every_s)

    async def announce_others(self) -> int:
        """Announce the events committed since the last look that this daemon did not write
        (as `foreign`); how many events were read.

        Every event of this daemon's that committed before the read was announced before the
        read's answer is handled (the store's one thread runs the write, then the read, and
        their answers reach the event loop in that order), so it is known to be ours.
        """
        after = self._followed
        assert after is not None, "follow_others was not started"

        def work() -> list[NewEvent]:
            with self._session() as s:
                q = select(EventRow).where(col(EventRow.id) > after)
                return [as_new(r) for r in s.exec(q.order_by(col(EventRow.id)).limit(FOLLOW_BATCH))]

        read = await self._run(work)
        if not read:
            return 0
        theirs = [ev for ev in read if ev.id not in self._own_ids]
        for ev in theirs:
            ev.foreign = True
        self._followed = read[-1].id
        self._own_ids = {i for i in self._own_ids if i > read[-1].id}
        self._emit(theirs)
        return len(read)
