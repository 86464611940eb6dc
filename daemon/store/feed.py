"""Live event feed: follows the events table and wakes readers when something new commits.

Events live in the store with monotonically increasing ids, so a reader that comes back with
`Last-Event-ID` (after a reconnect or a daemon restart) reads exactly what it missed: the
feed never holds events in memory, it only says "there is something new".

Many followers must not multiply the store's work: the store has one thread, and with 500
followers each re-reading after every event, one event would cost 500 queries and starve
every other client. So a follower of one task is woken only by that task's events, and
followers that need the same read (same position, same filter, which is every caught-up
follower) share one query. The feed also counts open streams against a limit, so the number
of followers, and with it the work per event, is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from daemon.store.store import NewEvent, Store

#: A shared read: the feed generation it started at, and its result.
_Read = tuple[int, "asyncio.Future[list[dict[str, Any]]]"]


class EventFeed:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._latest = 0
        # Bumped on every event: a read started at generation g has seen every event up to g.
        self._generation = 0
        # One wake-up signal per filter (None: all events), armed again after each firing.
        self._signals: dict[str | None, asyncio.Event] = {}
        self._followers: dict[str | None, int] = {}
        self._reads: dict[tuple[int, str | None], _Read] = {}
        self._streams = 0
        self._closed = False
        store.add_listener(self._on_event)

    async def start(self) -> None:
        self._latest = await self._store.last_event_id()

    def _on_event(self, event: NewEvent) -> None:
        self._latest = max(self._latest, event.id)
        self._generation += 1
        for key in {None, event.task_id}:
            signal = self._signals.pop(key, None)
            if signal is not None:
                signal.set()

    def close(self) -> None:
        self._closed = True
        for signal in self._signals.values():
            signal.set()
        self._signals.clear()

    @property
    def latest(self) -> int:
        return self._latest

    # --- stream slots ----------------------------------------------------------------------

    def acquire_stream(self, limit: int) -> bool:
        """Take one of `limit` stream slots; False when all are taken."""
        if self._streams >= limit:
            return False
        self._streams += 1
        return True

    def release_stream(self) -> None:
        self._streams = max(0, self._streams - 1)

    def stats(self) -> dict[str, int]:
        """Open streams, live followers and shared reads in flight (for status and tests)."""
        return {
            "streams": self._streams,
            "followers": sum(self._followers.values()),
            "reads_in_flight": len(self._reads),
        }

    # --- following -------------------------------------------------------------------------

    async def _read(
        self,
        after_id: int,
        task_id: str | None,
        generation: int,
    ) -> list[dict[str, Any]]:
        """Events after `after_id`, from a query shared with every follower needing the same.

        A read already in flight is joined only if it started at `generation` or later: one
        started earlier may have missed the event the caller was woken for.
        """
        key = (after_id, task_id)
        shared = self._reads.get(key)
        if shared is None or shared[0] < generation:
            future = asyncio.ensure_future(self._store.events_after(after_id, task_id))
            shared = (self._generation, future)
            self._reads[key] = shared

            def forget(f: asyncio.Future[Any], key: tuple[int, str | None] = key) -> None:
                current = self._reads.get(key)
                if current is not None and current[1] is f:
                    del self._reads[key]
                if not f.cancelled():
                    f.exception()  # retrieved: every follower may have gone meanwhile

            future.add_done_callback(forget)
        # Shielded: a follower that goes away must not cancel the others' read.
        return await asyncio.shield(shared[1])

    async def follow(
        self, after_id: int, task_id: str | None = None, heartbeat_s: float = 15.0
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Yield events after `after_id` forever; yields None as a heartbeat when idle."""
        last = after_id
        self._followers[task_id] = self._followers.get(task_id, 0) + 1
        try:
            while not self._closed:
                # Taken before the read, so an event committed during the read still wakes us.
                signal = self._signals.setdefault(task_id, asyncio.Event())
                batch = await self._read(last, task_id, self._generation)
                if batch:
                    for ev in batch:
                        last = ev["id"]
                        yield ev
                    continue
                try:
                    await asyncio.wait_for(signal.wait(), timeout=heartbeat_s)
                except TimeoutError:
                    yield None
        finally:
            left = self._followers[task_id] - 1
            if left:
                self._followers[task_id] = left
            else:
                # Nobody follows this task any more: drop its signal, or one would be kept
                # for every task ever followed.
                del self._followers[task_id]
                self._signals.pop(task_id, None)
