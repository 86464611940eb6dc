"""Live event feed: follows the events table and wakes readers when something new commits.

Events live in the store with monotonically increasing ids, so a reader that comes back with
`Last-Event-ID` (after a reconnect or a daemon restart) reads exactly what it missed: the
feed never holds events in memory, it only says "there is something new".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .store import NewEvent, Store


class EventFeed:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._latest = 0
        self._changed = asyncio.Event()
        self._closed = False
        store.add_listener(self._on_event)

    async def start(self) -> None:
        self._latest = await self._store.last_event_id()

    def _on_event(self, event: NewEvent) -> None:
        self._latest = max(self._latest, event.id)
        # Wake every waiter, then arm again for the next event.
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    @property
    def latest(self) -> int:
        return self._latest

    async def follow(self, after_id: int, task_id: str | None = None,
                     heartbeat_s: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Yield events after `after_id` forever; yields None as a heartbeat when idle."""
        last = after_id
        while not self._closed:
            waiter = self._changed
            batch = await self._store.events_after(last, task_id)
            if batch:
                for ev in batch:
                    last = ev["id"]
                    yield ev
                continue
            try:
                await asyncio.wait_for(waiter.wait(), timeout=heartbeat_s)
            except TimeoutError:
                yield None
