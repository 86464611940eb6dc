"""The lease keeper: this daemon's side of sharing a store with other daemons.

Every third of a lease period it renews the leases of the tasks this daemon runs, stops the
runs whose lease it no longer holds (another daemon claimed the task after the lease lapsed:
this daemon froze, or lost the database, for longer than a lease), and starts the unfinished
tasks nobody holds: those of a daemon that died or stopped. (A task ended through another
daemon, a cancel, reaches the run here sooner, through the store's events: `Runner`.) The
store decides who wins a claim (`daemon.store.leases`); what the keeper starts claims its
lease first (`Runner._drive`).

A daemon that cannot reach the database keeps its runs: their own writes fail, and once the
database answers again the next renewal says which leases are still this daemon's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from daemon.store.store import Store

__all__ = ["LeaseKeeper", "Runs", "may_run", "still_ours"]

log = logging.getLogger("tierd.runner")


class Runs(Protocol):
    """What the keeper needs of the runner."""

    def running(self) -> set[str]:
        """The tasks with a run in this daemon."""
        ...

    def start(self, task_id: str) -> None: ...

    def lost(self, task_id: str) -> None:
        """Stop the task's run here, leaving its state as it is: it is not ours any more."""
        ...


async def may_run(store: Store, task_id: str) -> bool:
    """Whether this daemon may run `task_id`: it holds (or just took) the task's lease, or
    its store leases nothing."""
    if store.lease is None:
        return True
    try:
        if await store.claim_task(task_id):
            return True
    except Exception as exc:  # the database is away: the keeper claims it later
        log.warning("task %s: its lease could not be claimed (tried again): %s", task_id, exc)
        return False
    log.info("task %s: another daemon runs it", task_id)
    return False


async def still_ours(store: Store, task_id: str) -> bool:
    """Whether this daemon still holds `task_id`'s lease (or its store leases nothing): asked
    before a run here writes a failure, which must not land on a task another daemon took
    over while this one was frozen or cut off."""
    if store.lease is None:
        return True
    held = await store.lease_of(task_id)
    return held is None or held[0] == store.lease.owner


class LeaseKeeper:
    def __init__(self, store: Store, runs: Runs) -> None:
        assert store.lease is not None, "a lease keeper needs a store opened with a lease"
        self._store = store
        self._runs = runs
        self.interval_s = store.lease.seconds / 3
        self._loop: asyncio.Task[None] | None = None
        self._unreachable = False

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._keep(), name="tierd-leases")

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception as exc:  # the database is away: runs go on, tried next tick
                if not self._unreachable:
                    log.warning("renewing task leases failed (tried again): %s", exc)
                self._unreachable = True
            else:
                if self._unreachable:
                    log.info("task leases renewed again")
                self._unreachable = False

    async def tick(self) -> None:
        """Renew, give up what is lost, start what is free: one round of the keeper."""
        running = self._runs.running()
        held = await self._store.renew_leases(running)
        still = self._runs.running()  # without those that ended while the renewal ran
        for task_id in sorted((running - held) & still):
            log.warning("task %s: another daemon holds its lease now; its run here stops", task_id)
            self._runs.lost(task_id)
        claimable = await self._store.claimable_task_ids()
        running = self._runs.running()
        for task_id in claimable:
            if task_id not in running:
                self._runs.start(task_id)
