"""The slot queue: agents wait here for one of `limit` slots, served fairly across tasks.

The next slot goes to the task with the fewest agents running (ties by round-robin), and in
arrival order within a task: a task that queues many agents cannot starve one submitted after
it. A newcomer never barges past waiters. Running agents are never interrupted; a lower limit
only holds back new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager


class SlotQueue:
    """Slots under the limit `limit()` says; call `dispatch` whenever that limit rises."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._in_flight = 0
        self._running: Counter[str] = Counter()
        # Waiters per task; the dict's order is the round-robin order across tasks.
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def slot(self, task_id: str) -> AbstractAsyncContextManager[None]:
        """Wait for a slot for one agent of `task_id`; hold it for the `async with` body.

        A waiter cancelled while waiting leaves the queue (and hands back a slot granted to it
        at that same moment). The slot is released when the body ends, however it ends.
        """
        return self._slot(task_id)

    @asynccontextmanager
    async def _slot(self, task_id: str) -> AsyncIterator[None]:
        await self._acquire(task_id)
        try:
            yield
        finally:
            self._release(task_id)

    async def _acquire(self, task_id: str) -> None:
        # No barging: with anyone waiting, a newcomer queues behind them.
        if not self._queues and self._in_flight < self._limit():
            self._grant(task_id)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(task_id, deque()).append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # Granted in the same loop iteration the waiter was cancelled: give it back.
                self._release(task_id)
            else:
                self._forget(task_id, fut)
            raise

    def _grant(self, task_id: str) -> None:
        self._in_flight += 1
        self._running[task_id] += 1

    def _release(self, task_id: str) -> None:
        self._in_flight -= 1
        self._running[task_id] -= 1
        if self._running[task_id] <= 0:
            del self._running[task_id]
        self.dispatch()

    def _forget(self, task_id: str, fut: asyncio.Future[None]) -> None:
        queue = self._queues.get(task_id)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(fut)
        if not queue:
            del self._queues[task_id]

    def dispatch(self) -> None:
        """Hand free slots to waiters: fewest running first, round-robin among equals."""
        while self._in_flight < self._limit() and self._queues:
            # min() keeps the first of equals, and the dict is in round-robin order.
            task_id = min(self._queues, key=lambda t: self._running[t])
            queue = self._queues.pop(task_id)
            fut = queue.popleft()
            if queue:
                self._queues[task_id] = queue  # to the back of the round
            if fut.done():  # pragma: no cover - cancelled waiters remove themselves
                continue
            fut.set_result(None)
            self._grant(task_id)
