"""The store's own thread: every database call runs there, never on the event loop.

One thread serialises the writes, so event ids come out in commit order, and the event loop
never blocks on SQLite. The listeners hear of each event once its transaction has committed.
The store's queries (`daemon.store.tasks`, `.streams`, ...) are written on top of this base.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from daemon.store.database import connect
from daemon.store.events import NewEvent
from daemon.store.migrations import migrate

T = TypeVar("T")


class StoreThread:
    """The database behind one thread: opening, closing, running work and announcing events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierd-store")
        self._engine: Engine | None = None
        self._listeners: list[Callable[[NewEvent], None]] = []

    async def open(self) -> None:
        """Connect and bring the schema up to date (raises SchemaTooNew for a newer one)."""
        await self._run(self._open_sync)

    async def close(self) -> None:
        if self._engine is not None:
            await self._run(self._engine.dispose)
        self._executor.shutdown(wait=True)

    def add_listener(self, listener: Callable[[NewEvent], None]) -> None:
        """Called on the event loop after each committed event."""
        self._listeners.append(listener)

    async def execute_raw(self, sql: str) -> None:
        """For tests and migrations only."""

        def work() -> None:
            assert self._engine is not None
            with self._engine.begin() as conn:
                conn.execute(text(sql))

        await self._run(work)

    def _open_sync(self) -> None:
        # Kept before migrating, so that `close` disposes of it even if the schema is refused.
        self._engine = connect(self.url)
        migrate(self._engine)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _write(
        self, fn: Callable[[], T], announce: Callable[[T], Sequence[NewEvent | None]]
    ) -> T:
        """Run a write on the store thread and announce the events it committed.

        The announcement is tied to the commit, not to the caller: a caller cancelled while
        the thread commits (a task cancelled mid-write) must not leave listeners (the event
        feed, the active-task count) without an event that is in the database.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn)

        def committed(f: asyncio.Future[T]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._emit([ev for ev in announce(f.result()) if ev is not None])

        future.add_done_callback(committed)
        return await asyncio.shield(future)

    def _session(self) -> Session:
        assert self._engine is not None, "Store.open() was not awaited"
        return Session(self._engine, expire_on_commit=False)

    def _emit(self, events: Sequence[NewEvent]) -> None:
        for ev in events:
            for listener in self._listeners:
                listener(ev)
