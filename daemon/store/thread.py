"""The store's own thread: every database call runs there, never on the event loop.

One thread serialises the writes, so event ids come out in commit order, and the event loop
never blocks on SQLite. The listeners hear of each event once its transaction has committed.
The store's queries (`daemon.store.tasks`, `.streams`, ...) are written on top of this base.

Opening takes the store's own lock (`daemon.store.lock`: one daemon per SQLite database), and every
call that fails for a full or failing disk raises `StoreFull`, never the driver's bare error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

# Imported for its pool listeners, which must see every connection the store opens (the API's
# kept task/get answers trust its mark: an unseen connection's writes would leave them stale).
from daemon.store import write_mark  # noqa: F401
from daemon.store.database import connect, store_location
from daemon.store.errors import StoreUnavailable, as_store_full
from daemon.store.events import NewEvent
from daemon.store.lock import StoreLock, lock_store, migration_lock
from daemon.store.migrations import migrate

if TYPE_CHECKING:
    from daemon.store.leases import Lease

T = TypeVar("T")
log = logging.getLogger("tierd.store")


class StoreThread:
    """The database behind one thread: opening, closing, running work and announcing events."""

    def __init__(self, url: str, *, lease: Lease | None = None) -> None:
        self.url = url
        #: This daemon's name and lease length, for the tasks it runs (`daemon.store.leases`);
        #: None: a store that runs no task (a tool's).
        self.lease = lease
        #: Tasks this store created with its lease, and when (monotonic): their first claim
        #: needs no query (`LeaseQueries.claim_task`).
        self._stamped: dict[str, float] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierd-store")
        self._engine: Engine | None = None
        self._lock: StoreLock | None = None
        self._listeners: list[Callable[[NewEvent], None]] = []
        #: While other daemons' events are followed (`EventLog.follow_others`): the last id
        #: read back, and the ids above it this daemon announced itself.
        self._followed: int | None = None
        self._own_ids: set[int] = set()
        #: The store in messages: its SQLite file, or its URL without the password.
        self.location = store_location(url)

    async def open(self) -> None:
        """Lock the store, connect and bring the schema up to date.

        Raises StoreInUse when another daemon holds the store, SchemaTooNew for a newer
        schema, StoreFull when the disk is full.
        """
        await self._run(self._open_sync)

    async def close(self) -> None:
        if self._engine is not None:
            await self._run(self._close_sync)
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
        # Before the first query: a second daemon must not even migrate the first one's store.
        self._lock = lock_store(self.url)
        try:
            with migration_lock(self._engine):
                migrate(self._engine)
        except OperationalError as exc:
            self._release_lock()
            if self._engine.dialect.name == "sqlite":
                raise  # a full disk, say: `_guarded` names it
            # A database server that is down, unreachable or refuses us: say which, without
            # the password, and not as a driver's traceback.
            raise StoreUnavailable(
                f"cannot open the task store {self.location}: {exc.orig}"
            ) from exc
        except BaseException:
            self._release_lock()  # a store that did not open holds nothing
            raise

    def _close_sync(self) -> None:
        assert self._engine is not None
        try:
            self._engine.dispose()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`, with a full or failing disk raised as StoreFull (on the store thread)."""
        try:
            return fn(*args)
        except Exception as exc:
            full = as_store_full(exc, self.location)
            if full is None or full is exc:
                raise
            raise full from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self._guarded, fn, *args)
        )

    async def _write(
        self, fn: Callable[[], T], announce: Callable[[T], Sequence[NewEvent | None]]
    ) -> T:
        """Run a write on the store thread and announce the events it committed.

        The announcement is tied to the commit, not to the caller: a caller cancelled while
        the thread commits (a task cancelled mid-write) must not leave listeners (the event
        feed, the active-task count) without an event that is in the database.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(self._guarded, fn))

        def committed(f: asyncio.Future[T]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._emit([ev for ev in announce(f.result()) if ev is not None])

        future.add_done_callback(committed)
        return await asyncio.shield(future)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A transaction for Core statements (`daemon.store.statements`), committed when the
        block ends, rolled back if it raises. Only on the store thread. A pooled connection,
        like the sessions': its checkout costs little next to the ORM it replaces."""
        assert self._engine is not None, "Store.open() was not awaited"
        with self._engine.begin() as conn:
            yield conn

    def _session(self) -> Session:
        assert self._engine is not None, "Store.open() was not awaited"
        return Session(self._engine, expire_on_commit=False)

    def _emit(self, events: Sequence[NewEvent]) -> None:
        if self._followed is not None:
            self._own_ids.update(ev.id for ev in events if not ev.foreign)
        for ev in events:
            for listener in self._listeners:
                try:
                    listener(ev)
                except Exception:  # one listener's bug must not keep the event from the rest
                    log.exception("a listener of the store's events failed on event %s", ev.id)
