"""The runner: executes task workflows in the background, resumes them, cancels them.

The workflow's definition lives in `workflow.py` (what it does for a task, in `task_run.py`);
this module owns execution: one asyncio task per live tierd task, started on submit and again
for every non-terminal task when the daemon starts (a task waiting for a human resumes into
the same wait). Stopping the daemon interrupts workflows without touching their state, so the
next start resumes them; cancelling a task interrupts its workflow (in-flight model requests
are closed, governor slots released, streams not started yet never start) and marks it
canceled.

Nothing a client does with its connection reaches a workflow: the asyncio tasks here belong
to the daemon, not to a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.engine.notify import Notifier
from daemon.governor.governor import Governor
from daemon.store.store import Store

if TYPE_CHECKING:  # imported for real lazily, off the event loop (see _open_workflow)
    from daemon.engine.workflow import Workflow

log = logging.getLogger("tierd.runner")

#: How long a cancel waits for the workflow to unwind before marking the task canceled.
CANCEL_WAIT_S = 10.0
#: Longest the engine's import may take before tasks fail with a clear reason (no wait in
#: the daemon is unbounded; a healthy import takes seconds).
ENGINE_IMPORT_TIMEOUT_S = 300.0


class Runner:
    def __init__(self, store: Store, governor: Governor, *, checkpoints: Path | None) -> None:
        self.store = store
        self.governor = governor
        self.checkpoints = checkpoints
        self.notifier = Notifier()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._workflow: Workflow | None = None
        self._opening: asyncio.Future[Workflow] | None = None
        self._stopping = False

    def preload(self) -> None:
        """Start loading the engine now, so the first task does not wait for the import.

        The import (litellm, langgraph) costs seconds of CPU; a daemon exists to run tasks,
        so it pays that at start, in a thread, while the API already answers.
        """
        self._begin_open()

    def _begin_open(self) -> asyncio.Future[Workflow]:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open_workflow())
            # A failed open is reported to every task that awaits it; nobody may await a
            # preload, so mark the exception seen here.
            self._opening.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._opening

    async def _get_workflow(self) -> Workflow:
        if self._workflow is not None:
            return self._workflow
        self._begin_open()
        assert self._opening is not None
        # Shielded: a task cancelled while the workflow opens must not leave it half open
        # for every other task.
        return await asyncio.shield(self._opening)

    async def _open_workflow(self) -> Workflow:
        # Imported lazily (langgraph and litellm are heavy, and only the engine needs them)
        # and off the event loop: the import takes seconds, during which the API must keep
        # answering. A daemon thread, so that a stop never waits for an import to finish.
        loop = asyncio.get_running_loop()
        imported: asyncio.Future[Any] = loop.create_future()

        def settle(module: Any, error: BaseException | None) -> None:
            if imported.done():
                return
            if error is not None:
                imported.set_exception(error)
            else:
                imported.set_result(module)

        def load() -> None:
            module: Any = None
            error: BaseException | None = None
            try:
                module = importlib.import_module(f"{__package__}.workflow")
            except BaseException as exc:  # handed to the waiting coroutine
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a stop)
                loop.call_soon_threadsafe(settle, module, error)

        threading.Thread(target=load, name="tierd-engine-import", daemon=True).start()
        try:
            try:
                async with asyncio.timeout(ENGINE_IMPORT_TIMEOUT_S):
                    module = await imported
            except TimeoutError:
                raise RuntimeError(
                    f"loading the engine (litellm, langgraph) took over "
                    f"{ENGINE_IMPORT_TIMEOUT_S:.0f}s; is the machine out of memory or CPU?"
                ) from None
            workflow = module.Workflow(
                self.store, self.governor, signals=self, notifier=self.notifier
            )
            await workflow.open(self.checkpoints)
        except BaseException:
            self._opening = None
            raise
        self._workflow = workflow
        return workflow

    # --- what the service calls ------------------------------------------------------------

    def start(self, task_id: str) -> None:
        if self._stopping or task_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(task_id), name=f"tierd-task-{task_id}")
        self._tasks[task_id] = task
        task.add_done_callback(lambda t: self._forget(task_id, t))

    def _forget(self, task_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(task_id) is task:
            del self._tasks[task_id]

    async def cancel(self, task_id: str) -> None:
        """Stop the task's workflow now and mark it canceled with a partial report.

        Cancelling the workflow's asyncio task cancels every stream: a model request in
        flight is closed (the provider sees the client go away), its governor slot is
        released, a stream waiting for its dependencies or for a human never starts.
        """
        task = self._tasks.get(task_id)
        if task is not None and not task.done():
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
            if pending:
                log.warning(
                    "the workflow of task %s did not stop within %.0fs of its "
                    "cancellation; marking it canceled anyway",
                    task_id,
                    CANCEL_WAIT_S,
                )
        workflow = await self._get_workflow()
        from daemon.store.states import TaskState

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

    # --- what the workflow calls (the runner is its `human.HumanSignals`) ---------------------

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
        await self.notifier.aclose()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()  # an import still running is abandoned, not awaited
            with contextlib.suppress(BaseException):
                await self._opening
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
                from daemon.engine.ending import fail_task

                await fail_task(
                    self.store,
                    task_id,
                    "internal error in the workflow; see the daemon log",
                    self.notifier,
                )
        finally:
            self._wakers.pop(task_id, None)
