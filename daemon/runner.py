"""The runner: executes task workflows in the background, resumes them, cancels them.

The workflow's definition lives in `workflow.py`; this module owns execution: one asyncio task
per live tierd task, started on submit and again for every non-terminal task when the daemon
starts. Stopping the daemon interrupts workflows without touching their state, so the next
start resumes them; cancelling a task interrupts its workflow and marks it canceled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from .governor import Governor
from .store import Store

log = logging.getLogger("tierd.runner")


class Runner:
    def __init__(self, store: Store, governor: Governor, *, checkpoints: Path | None) -> None:
        self.store = store
        self.governor = governor
        self.checkpoints = checkpoints
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._workflow: Any = None
        self._stopping = False

    async def _get_workflow(self) -> Any:
        if self._workflow is None:
            # Imported lazily: langgraph and litellm are heavy, and only the engine needs them.
            from .workflow import Workflow

            self._workflow = Workflow(self.store, self.governor, self)
            await self._workflow.open(self.checkpoints)
        return self._workflow

    # --- what the service calls ------------------------------------------------------------

    def start(self, task_id: str) -> None:
        if self._stopping or task_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(task_id), name=f"tierd-task-{task_id}")
        self._tasks[task_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(task_id, None))

    async def cancel(self, task_id: str) -> None:
        """Stop the task's workflow now (in-flight model requests are closed) and mark it
        canceled with a partial report of what was done."""
        task = self._tasks.get(task_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        workflow = await self._get_workflow()
        from .states import TaskState

        await workflow.finalize(task_id, TaskState.canceled, "canceled by client")

    def wake(self, task_id: str) -> None:
        """Something a waiting workflow may need arrived (an answer, a decision)."""
        signal = self._wakers.pop(task_id, None)
        if signal is not None:
            signal.set()

    def concurrency(self) -> dict[str, Any]:
        return self.governor.snapshot()

    def set_ceiling(self, ceiling: int) -> None:
        self.governor.set_ceiling(ceiling)

    # --- what the workflow calls -----------------------------------------------------------

    def human_signal(self, task_id: str) -> asyncio.Event:
        """The event the next `wake(task_id)` sets.

        A waiter takes it *before* checking the store and waits on it after, so an answer that
        lands in between is never missed; each wake hands out a fresh event.
        """
        return self._wakers.setdefault(task_id, asyncio.Event())

    # --- lifecycle -------------------------------------------------------------------------

    async def resume_all(self) -> None:
        for task_id in await self.store.nonterminal_task_ids():
            self.start(task_id)

    async def stop(self) -> None:
        """Interrupt every workflow, leaving its state for the next start to resume."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._workflow is not None:
            await self._workflow.close()

    async def _drive(self, task_id: str) -> None:
        try:
            workflow = await self._get_workflow()
            await workflow.run(task_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The workflow records failures itself; this is the last line of defence, so that
            # a bug never leaves a task silently stuck.
            log.exception("workflow for task %s crashed", task_id)
            with contextlib.suppress(Exception):
                from .workflow import fail_task

                await fail_task(self.store, task_id, "internal error in the workflow; see the "
                                "daemon log")
        finally:
            self._wakers.pop(task_id, None)
