"""What the daemon lets in: the count behind limits.max_active_tasks, and per-key turns.

Admission is asked on every submit, so it must be cheap (no query per submit) and right under
bursts and restarts; a submit with an idempotency key takes its key's turn so a concurrent
retry finds the first submit's task instead of racing it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from daemon.store.states import TERMINAL
from daemon.store.store import NewEvent, Store


class ActiveTasks:
    """The ids of tasks not yet terminal, kept from the store's task.state events.

    Admission control asks on every submit, so the answer must not cost a query (a flood of
    refused submits would then still load the store's single thread). The set is read from
    the store once, on first use, which also covers tasks resumed after a restart; events
    committed while that read runs are applied after it (applying one twice is harmless).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ids: set[str] | None = None
        self._loading: asyncio.Future[None] | None = None
        self._early: list[NewEvent] = []
        store.add_listener(self._on_event)

    def _on_event(self, event: NewEvent) -> None:
        if event.type != "task.state" or event.task_id is None:
            return
        if self._ids is not None:
            self._apply(event)
        elif self._loading is not None:
            self._early.append(event)
        # Before the first read starts there is nothing to do: that read sees this commit.

    def _apply(self, event: NewEvent) -> None:
        assert self._ids is not None and event.task_id is not None
        if event.data.get("state") in TERMINAL:
            self._ids.discard(event.task_id)
        else:
            self._ids.add(event.task_id)

    async def _load(self) -> None:
        ids = set(await self._store.nonterminal_task_ids())
        self._ids = ids
        early, self._early = self._early, []
        for event in early:
            self._apply(event)

    async def count(self) -> int:
        if self._ids is None:
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._load())
            try:
                await asyncio.shield(self._loading)
            except Exception:
                # The next caller tries again from scratch: events buffered for this load
                # may be stale by then (a task queued here may finish before the retry).
                self._loading = None
                self._early = []
                raise
        assert self._ids is not None
        return len(self._ids)


class KeyLocks:
    """One asyncio lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]  # a flood of distinct keys leaves nothing behind
            else:
                self._locks[key] = (lock, users - 1)
