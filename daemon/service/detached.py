"""Work that runs to its end even if the client that asked for it goes away.

A client that disconnects mid-request cancels the request's task. For a write that must not
stop half way (a task stored but never started, an answer stored but its stream never woken),
the service runs the write as a task of its own and only waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Detached:
    """Runs work shielded from the caller's cancellation, keeping it referenced until done."""

    def __init__(self) -> None:
        # Referenced here until done: asyncio keeps only weak references to tasks.
        self._running: set[asyncio.Future[Any]] = set()

    async def run(self, work: Awaitable[T]) -> T:
        """Run `work` to its end; the caller gets its result, or its error, if still there."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller may be gone; an error is its answer
