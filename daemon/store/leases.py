"""Task leases: which daemon runs a task, so that several daemons can share one store.

A daemon runs a task only while it holds the task's lease (`tasks.lease_owner`, until
`tasks.lease_expires_at`). It takes the lease when it creates the task or claims it, renews
every lease it holds a few times per lease period, and a lease that is not renewed (its
daemon died, lost the database, or froze) expires: then any daemon may claim the task and
resume it from its last durable step (the checkpoints and the step memo are in the store).

Times are the database's own clock, read in each statement: the daemons may run on machines
whose clocks differ, the database is the one clock they all share. A claim is one
conditional UPDATE, so two daemons that try at once cannot both win: PostgreSQL re-checks
the condition on the row the first one wrote, SQLite runs one writer at a time.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Table, bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from daemon.store.states import TERMINAL
from daemon.store.tables import TaskRow
from daemon.store.thread import StoreThread

__all__ = ["Lease", "LeaseQueries", "db_now"]


@dataclass(frozen=True)
class Lease:
    """Who this store's daemon is to the other daemons, and how long its leases last."""

    owner: str
    #: Seconds a lease lasts without a renewal; the runner renews at a third of it.
    seconds: float


class db_now(FunctionElement[float]):
    """The database's clock, in seconds since the epoch (a float)."""

    type = Float()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _pg_now(_element: Any, _compiler: Any, **_kw: Any) -> str:
    # clock_timestamp, not now(): now() is the transaction's start, and a renewal must not
    # be dated earlier than it runs.
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_now, "sqlite")
def _sqlite_now(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def _table() -> Table:
    table = TaskRow.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


_TASKS = _table()
_LIVE = _TASKS.c.state.not_in([str(t) for t in TERMINAL])


def _free_for(owner: Any) -> ColumnElement[bool]:
    """A task `owner` may claim: nobody holds it, `owner` does, or its lease has expired."""
    return or_(
        _TASKS.c.lease_owner.is_(None),
        _TASKS.c.lease_owner == owner,
        _TASKS.c.lease_expires_at < db_now(),
    )


_CLAIM = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("b_id"), _LIVE, _free_for(bindparam("b_owner")))
    .values(lease_owner=bindparam("b_owner"), lease_expires_at=db_now() + bindparam("b_s"))
)
_STAMP = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("b_id"))
    .values(lease_owner=bindparam("b_owner"), lease_expires_at=db_now() + bindparam("b_s"))
)


def stamp_new_task(conn: Connection, lease: Lease | None, task_id: str) -> None:
    """Give a task being created (in `conn`'s transaction) to `lease`'s daemon, so that no
    other daemon claims it between its creation and its start."""
    if lease is not None:
        conn.execute(_STAMP, {"b_id": task_id, "b_owner": lease.owner, "b_s": lease.seconds})


class LeaseQueries(StoreThread):
    """Claiming, renewing and releasing task leases, for the daemon named by `self.lease`."""

    def _own(self) -> Lease:
        assert self.lease is not None, "this store was opened without a lease (Store(lease=))"
        return self.lease

    async def claim_task(self, task_id: str) -> bool:
        """Take `task_id`'s lease if it is unfinished and free (or already ours, or expired);
        whether this daemon now holds it."""
        lease = self._own()
        stamped = self._stamped.pop(task_id, None)
        if stamped is not None and time.monotonic() - stamped < lease.seconds / 3:
            # Created here a moment ago with our lease, which no renewal has had to extend
            # yet: nobody else can hold it, so the start spends no query on it.
            return True

        def work() -> bool:
            with self._tx() as conn:
                params = {"b_id": task_id, "b_owner": lease.owner, "b_s": lease.seconds}
                return conn.execute(_CLAIM, params).rowcount == 1

        return await self._run(work)

    async def renew_leases(self, task_ids: Collection[str]) -> set[str]:
        """Extend this daemon's leases on `task_ids` (those of unfinished tasks); the ids
        whose lease is still this daemon's. An id missing from the answer is not ours any
        more: another daemon claimed it after our lease lapsed (or it was deleted). A task
        that ended stays ours: its run here may still be finishing."""
        lease = self._own()
        if not task_ids:
            return set()
        ids = list(task_ids)
        ours = _TASKS.c.lease_owner == lease.owner
        renew = (
            update(_TASKS)
            .where(_TASKS.c.id.in_(ids), _LIVE, ours)
            .values(lease_expires_at=db_now() + lease.seconds)
        )
        held = select(_TASKS.c.id).where(_TASKS.c.id.in_(ids), ours)

        def work() -> set[str]:
            with self._tx() as conn:
                conn.execute(renew)
                return set(conn.execute(held).scalars())

        return await self._run(work)

    async def claimable_task_ids(self) -> list[str]:
        """The unfinished tasks this daemon may claim (free, ours, or expired), oldest first."""
        lease = self._own()
        statement = (
            select(_TASKS.c.id)
            .where(_LIVE, _free_for(lease.owner))
            .order_by(_TASKS.c.created_at, _TASKS.c.id)
        )

        def work() -> list[str]:
            with self._tx() as conn:
                return list(conn.execute(statement).scalars())

        return await self._run(work)

    async def release_leases(self, task_ids: Collection[str]) -> None:
        """Give up the leases of `task_ids` that this daemon holds (a daemon that stops), so
        that another daemon may resume them at once instead of after they expire."""
        lease = self._own()
        if not task_ids:
            return
        statement = (
            update(_TASKS)
            .where(_TASKS.c.id.in_(list(task_ids)), _TASKS.c.lease_owner == lease.owner)
            .values(lease_owner=None, lease_expires_at=None)
        )

        def work() -> None:
            with self._tx() as conn:
                conn.execute(statement)

        await self._run(work)

    async def lease_of(self, task_id: str) -> tuple[str, float] | None:
        """Who holds `task_id`'s lease and for how many more seconds (negative: expired);
        None when nobody does."""
        statement = select(_TASKS.c.lease_owner, _TASKS.c.lease_expires_at - db_now()).where(
            _TASKS.c.id == task_id, _TASKS.c.lease_owner.is_not(None)
        )

        def work() -> tuple[str, float] | None:
            with self._tx() as conn:
                row = conn.execute(statement).first()
            return None if row is None else (str(row[0]), float(row[1] or 0.0))

        return await self._run(work)
