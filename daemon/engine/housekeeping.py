"""The runner's housekeeping of code tasks: worktrees reconciled once at start, and an ended
task's worktrees and spare branches removed.

Kept apart from the runner (which owns running workflows) and light to import: the work itself
is the workflow's (`Workflow.reconcile_code`, `Workflow.cleanup_code`, see `code.hygiene`),
loaded lazily like the rest of the engine. Failures here are logged, never a task's.

An ended task's clean-up outlives its run's cancellation: a daemon stopped just after a code
task completed lets the clean-up finish (for `CLEANUP_GRACE_S` at most) instead of killing git
half way and leaving the streams' branches and worktrees to its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.engine.workflow import Workflow

__all__ = ["CLEANUP_GRACE_S", "Housekeeping"]

log = logging.getLogger("tierd.runner")

#: How long a stopping daemon waits for ended tasks' clean-ups.
CLEANUP_GRACE_S = 10.0


class Housekeeping:
    """Reconcile once per daemon, before any task touches a worktree; clean up ended tasks."""

    def __init__(self, get_workflow: Callable[[], Awaitable[Workflow]]) -> None:
        self._get_workflow = get_workflow
        self._reconciled: asyncio.Future[None] | None = None
        self._at_start: asyncio.Task[None] | None = None
        #: Clean-ups of ended tasks under way.
        self._cleanups: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        """At every start, tasks or not: what a crash left in the worktrees root goes."""
        self._at_start = asyncio.create_task(self._reconcile_at_start())

    async def _reconcile_at_start(self) -> None:
        with contextlib.suppress(Exception):  # a workflow that cannot open fails its tasks
            await self.reconciled(await self._get_workflow())

    async def reconciled(self, workflow: Workflow) -> None:
        """Return once the start's reconciliation is done (running it if nobody has)."""
        if self._reconciled is None:
            self._reconciled = asyncio.ensure_future(self._reconcile(workflow))
        await asyncio.shield(self._reconciled)

    async def _reconcile(self, workflow: Workflow) -> None:
        try:
            await workflow.reconcile_code()
        except Exception:
            log.exception("cleaning up code tasks' worktrees failed; continuing")

    async def ended(self, workflow: Workflow, task_id: str) -> None:
        """The task ended: its worktrees and spare branches go (even if the caller is
        cancelled meanwhile: `stop` waits for them)."""
        cleanup = asyncio.ensure_future(self._cleanup(workflow, task_id))
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)
        await asyncio.shield(cleanup)

    async def _cleanup(self, workflow: Workflow, task_id: str) -> None:
        try:
            await workflow.cleanup_code(task_id)
        except Exception:
            log.exception("task %s: removing its worktrees failed", task_id)

    async def stop(self) -> None:
        if self._at_start is not None and not self._at_start.done():
            self._at_start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._at_start
        if self._cleanups:
            _, late = await asyncio.wait(set(self._cleanups), timeout=CLEANUP_GRACE_S)
            for cleanup in late:
                log.warning(
                    "a task's clean-up took over %.0fs; the next start ends it", CLEANUP_GRACE_S
                )
                cleanup.cancel()
