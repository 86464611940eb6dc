"""The runner's housekeeping of code tasks: worktrees reconciled once at start, and an ended
task's worktrees and spare branches removed.

Kept apart from the runner (which owns running workflows) and light to import: the work itself
is the workflow's (`Workflow.reconcile_code`, `Workflow.cleanup_code`, see `code.hygiene`),
loaded lazily like the rest of the engine. Failures here are logged, never a task's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.engine.workflow import Workflow

__all__ = ["Housekeeping"]

log = logging.getLogger("tierd.runner")


class Housekeeping:
    """Reconcile once per daemon, before any task touches a worktree; clean up ended tasks."""

    def __init__(self, get_workflow: Callable[[], Awaitable[Workflow]]) -> None:
        self._get_workflow = get_workflow
        self._reconciled: asyncio.Future[None] | None = None
        self._at_start: asyncio.Task[None] | None = None

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
        """The task ended: its worktrees and spare branches go."""
        try:
            await workflow.cleanup_code(task_id)
        except Exception:
            log.exception("task %s: removing its worktrees failed", task_id)

    async def stop(self) -> None:
        if self._at_start is not None and not self._at_start.done():
            self._at_start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._at_start
