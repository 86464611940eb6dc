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

A full disk does not end a task: its workflow runs again once there may be room (see
`disk_full`), and fails with that reason only when the disk stays full for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.engine.checkpoints import check as check_checkpoints
from daemon.engine.disk_full import RoomWait, fail_when_written, store_full
from daemon.engine.errors import CheckpointsDamaged
from daemon.engine.housekeeping import Housekeeping
from daemon.engine.notify import Notifier
from daemon.governor.governor import Governor
from daemon.store.store import Store

if TYPE_CHECKING:  # imported for real lazily, off the event loop (see _open_workflow)
    from daemon.engine.gateway import ModelsFactory
    from daemon.engine.workflow import Workflow

log = logging.getLogger("tierd.runner")

#: How long a cancel waits for the workflow to unwind before marking the task canceled.
CANCEL_WAIT_S = 10.0
#: Longest the engine's import may take before tasks fail with a clear reason (no wait in
#: the daemon is unbounded; a healthy import takes seconds).
ENGINE_IMPORT_TIMEOUT_S = 300.0


class Runner:
    def __init__(
        self,
        store: Store,
        governor: Governor,
        *,
        checkpoints: Path | None,
        room: RoomWait | None = None,
        models: ModelsFactory | None = None,
        worktrees: Path | None = None,
        private_dirs: tuple[Path, ...] = (),
    ) -> None:
        self.store = store
        self.governor = governor
        self.checkpoints = checkpoints
        #: The pauses between runs of a workflow while the store's disk is full.
        self.room = room or RoomWait()
        #: How tasks reach their models (None: the model tiers; tests give a script).
        self.models = models
        self.notifier = Notifier()
        #: Where code tasks' worktrees live, and what their commands must not read.
        self.worktrees = worktrees
        self.private_dirs = private_dirs
        self.housekeeping = Housekeeping(self._get_workflow)
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
            options = {} if self.models is None else {"models": self.models}
            workflow = module.Workflow(
                self.store,
                self.governor,
                signals=self,
                notifier=self.notifier,
                worktrees=self.worktrees,
                private_dirs=self.private_dirs,
                **options,
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
        log.info("task %s: started", task_id)
        task = asyncio.create_task(self._drive(task_id), name=f"tierd-task-{task_id}")
        self._tasks[task_id] = task
        task.add_done_callback(lambda t: self._forget(task_id, t))

    async def settled(self, task_id: str) -> None:
        """Return once no run of `task_id` goes on in this daemon; never cancels it.

        A task's state turns final inside its run, and the run goes on for a moment: LangGraph
        writes the last checkpoint, a failure's `attention` event is written, the worktrees
        are cleaned up. A deletion waits for that (cancelling would kill a git command half
        way), else what those write would outlive the deleted task.
        """
        task = self._tasks.get(task_id)
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait({task})

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
        await self.housekeeping.ended(workflow, task_id)

    async def check_models(
        self, stored: Mapping[str, Any], *, wait: bool = False
    ) -> list[str] | None:
        """Check each role's model in task settings `stored` (flat keys) before any call.

        Raises ModelConfigError naming the role and the model when a tier cannot be used (no
        model, a model litellm cannot route); returns warnings for a person (a model whose
        price is unknown: its cost will be reported as unknown). The check needs the engine
        (litellm) loaded: until it is, None (not checked) unless `wait`; every task is
        checked again before its first call anyway.
        """
        if self._workflow is None and not wait:
            return None
        workflow = await self._get_workflow()
        return workflow.check_models(stored)

    def model_prices(
        self, models: Mapping[str, str]
    ) -> dict[str, tuple[float, float] | None] | None:
        """Each role's model's price per million input and output tokens (None: unknown);
        None as a whole until the engine has loaded: litellm's import must never block the
        event loop for a status read."""
        if self._workflow is None:
            return None
        from roles.models.costs import price_per_million

        return {role: price_per_million(model) for role, model in models.items()}

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
        """Start every unfinished task, once the checkpoint file is known to be usable.

        Raises CheckpointsDamaged (before any task starts) when it is not: the daemon must
        not start on it (`tierd serve` says so and exits with the configuration error code).
        """
        await check_checkpoints(self.checkpoints)
        if self.worktrees is not None:
            self.housekeeping.start()
        unfinished = await self.store.nonterminal_task_ids()
        if unfinished:
            log.info("resuming %d unfinished task(s)", len(unfinished))
        for task_id in unfinished:
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
        await self.housekeeping.stop()
        await self.notifier.aclose()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()  # an import still running is abandoned, not awaited
            with contextlib.suppress(BaseException):
                await self._opening
        if self._workflow is not None:
            await self._workflow.close()

    async def _drive(self, task_id: str) -> None:
        workflow: Workflow | None = None
        try:
            workflow = await self._get_workflow()
            await self.housekeeping.reconciled(workflow)
            await self._run(workflow, task_id)
            await self.housekeeping.ended(workflow, task_id)
        except asyncio.CancelledError:
            raise
        except CheckpointsDamaged as exc:
            # Found at start, this stops the daemon (see resume_all); found later, every task
            # fails with what to do, not with an internal error.
            log.error("task %s cannot run: %s", task_id, exc)
            await self._fail_quietly(task_id, str(exc))
        except Exception:
            # The workflow records failures itself; this is the last line of defence, so that
            # a bug never leaves a task silently stuck.
            log.exception("workflow for task %s crashed", task_id)
            await self._fail_quietly(task_id, "internal error in the workflow; see the daemon log")
            if workflow is not None:
                await self.housekeeping.ended(workflow, task_id)
        finally:
            self._wakers.pop(task_id, None)
            if workflow is not None:
                workflow.forget(task_id)

    async def _fail_quietly(self, task_id: str, reason: str) -> None:
        """Fail the task with `reason` if that can be written; nothing more can be done."""
        from daemon.engine.ending import fail_task

        with contextlib.suppress(Exception):
            await fail_task(self.store, task_id, reason, self.notifier)

    async def _run(self, workflow: Workflow, task_id: str) -> None:
        """Run the task's workflow; while the disk is full, again after a pause, for a while.

        A run cut by a full disk lost nothing (finished steps are in the memo, an answer that
        could not be saved is held by the workflow), so the next run goes on from there.
        """
        delays = self.room.delays()
        while True:
            try:
                await workflow.run(task_id)
                return
            except Exception as exc:
                full = store_full(exc)
                if full is None:
                    raise
                delay = next(delays, None)
                if delay is None:
                    reason = f"the disk stayed full for over {self.room.patience_s:.0f}s: {full}"
                    await fail_when_written(self.store, task_id, reason, self.notifier, self.room)
                    return
                log.warning(
                    "task %s waits for disk space: %s; trying again in %.0fs", task_id, full, delay
                )
                await asyncio.sleep(delay)
