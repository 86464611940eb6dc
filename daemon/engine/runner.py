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

Several daemons may share one store (PostgreSQL): a run starts only once its task's lease is
this daemon's (`daemon.store.leases`), the `LeaseKeeper` renews the leases and starts what a
dead daemon left, a stop hands its tasks' leases back, and what another daemon writes for a
task running here (an answer, a decision, a cancel) arrives as the store's foreign events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daemon.engine.checkpoints import Checkpoints
from daemon.engine.checkpoints import check as check_checkpoints
from daemon.engine.code_hosting import CodeHosting
from daemon.engine.disk_full import RoomWait, fail_when_written, store_full
from daemon.engine.errors import CheckpointsDamaged
from daemon.engine.housekeeping import Housekeeping
from daemon.engine.leases import LeaseKeeper, may_run, still_ours
from daemon.engine.loading import WorkflowLoader
from daemon.engine.notify import Notifier
from daemon.governor.governor import Governor
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import NewEvent, Store

if TYPE_CHECKING:  # imported for real lazily, off the event loop (see `loading`)
    from daemon.engine.gateway import ModelsFactory
    from daemon.engine.workflow import Workflow

log = logging.getLogger("tierd.runner")

#: How long a cancel waits for the workflow to unwind before marking the task canceled.
CANCEL_WAIT_S = 10.0


class Runner:
    def __init__(
        self,
        store: Store,
        governor: Governor,
        *,
        checkpoints: Checkpoints,
        room: RoomWait | None = None,
        models: ModelsFactory | None = None,
        code: CodeHosting | None = None,
    ) -> None:
        self.store = store
        self.governor = governor
        self.checkpoints = checkpoints
        #: The pauses between runs of a workflow while the store's disk is full.
        self.room = room or RoomWait()
        #: How tasks reach their models (None: the model tiers; tests give a script).
        self.models = models
        self.notifier = Notifier()
        #: Where code tasks' worktrees live, what their commands must not read, where they run.
        self.code = code or CodeHosting()
        self._loader = WorkflowLoader(self._build, checkpoints)
        self.housekeeping = Housekeeping(self._loader.get)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._stopping = False
        #: None: a store of this daemon's alone, without leases (in-process tests, tools).
        self.leases = LeaseKeeper(store, self) if store.lease is not None else None
        self._giving_up: set[asyncio.Task[None]] = set()
        self._canceling: set[str] = set()
        store.add_listener(self._on_event)

    def preload(self) -> None:
        """Start loading the engine now, so the first task does not wait for the import.

        The import (litellm, langgraph) costs seconds of CPU; a daemon exists to run tasks,
        so it pays that at start, in a thread, while the API already answers.
        """
        self._loader.begin()

    def _build(self, module: Any) -> Workflow:
        options = {} if self.models is None else {"models": self.models}
        workflow: Workflow = module.Workflow(
            self.store,
            self.governor,
            signals=self,
            notifier=self.notifier,
            code=self.code,
            **options,
        )
        return workflow

    # --- what the service calls ------------------------------------------------------------

    def start(self, task_id: str, *, new: bool = False) -> None:
        """Run the task (`new`: just created here, so it has no checkpoint to resume)."""
        if self._stopping or task_id in self._tasks or task_id in self._canceling:
            return
        log.info("task %s: started", task_id)
        task = asyncio.create_task(self._drive(task_id, new), name=f"tierd-task-{task_id}")
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

    def running(self) -> set[str]:
        """The tasks with a run in this daemon (the lease keeper renews their leases)."""
        return {task_id for task_id, task in self._tasks.items() if not task.done()}

    def lost(self, task_id: str) -> None:
        """Stop the run of `task_id` here without touching its state: another daemon holds
        its lease now, or ended it (a cancel through that daemon)."""
        task = self._tasks.get(task_id)
        if task is None or task.done() or self._stopping:  # a stop cancels it anyway
            return
        task.cancel()
        giving_up = asyncio.create_task(self._gave_up(task_id, task))
        self._giving_up.add(giving_up)
        giving_up.add_done_callback(self._giving_up.discard)

    async def _gave_up(self, task_id: str, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        # Ended elsewhere: its worktrees here go, as when a run here ends it. (Taken over: the
        # new holder needs the branches, and this home's worktrees go at its next start.)
        row = await self.store.get_task(task_id)
        workflow = self._loader.loaded
        if row is not None and row.state in TERMINAL and workflow is not None:
            await self.housekeeping.ended(workflow, task_id)

    def _on_event(self, event: NewEvent) -> None:
        """What another daemon sharing the store wrote, for a task that runs here."""
        if not event.foreign or event.task_id is None:
            return
        if event.type in ("task.answered", "task.decision"):
            self.wake(event.task_id)
        elif event.type == "task.state" and event.data.get("state") in TERMINAL:
            self.lost(event.task_id)

    async def cancel(self, task_id: str) -> None:
        """Stop the task's workflow now and mark it canceled with a partial report.

        Cancelling the workflow's asyncio task cancels every stream: a model request in
        flight is closed (the provider sees the client go away), its governor slot is
        released, a stream waiting for its dependencies or for a human never starts.
        """
        # Not started again (the lease keeper) between its run's end and its canceled state.
        self._canceling.add(task_id)
        try:
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
            workflow = await self._loader.get()
            await workflow.finalize(task_id, TaskState.canceled, "canceled by client")
        finally:
            self._canceling.discard(task_id)
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
        if self._loader.loaded is None and not wait:
            return None
        workflow = await self._loader.get()
        return workflow.check_models(stored)

    def model_prices(
        self, models: Mapping[str, str]
    ) -> dict[str, tuple[float, float] | None] | None:
        """Each role's model's price per million input and output tokens (None: unknown);
        None as a whole until the engine has loaded: litellm's import must never block the
        event loop for a status read."""
        if self._loader.loaded is None:
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

    async def executors(self) -> dict[str, Any]:
        return await self.code.describe()

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
        if self.code.worktrees is not None:
            self.housekeeping.start()
        if self.leases is None:
            unfinished = await self.store.nonterminal_task_ids()
        else:  # not those another daemon runs; the keeper starts them if it dies
            unfinished = await self.store.claimable_task_ids()
            self.leases.start()
        if unfinished:
            log.info("resuming %d unfinished task(s)", len(unfinished))
        for task_id in unfinished:
            self.start(task_id)

    async def stop(self) -> None:
        """Interrupt every workflow, leaving its state for the next start to resume."""
        self._stopping = True
        if self.leases is not None:
            await self.leases.stop()
        held = self.running()
        tasks = list(self._tasks.values()) + list(self._giving_up)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.leases is not None:
            # Handed back, so that another daemon sharing the store goes on with them now,
            # not once their leases expire (this daemon's next start claims them again).
            with contextlib.suppress(Exception):
                await self.store.release_leases(held)
        await self.housekeeping.stop()
        await self.notifier.aclose()
        await self._loader.close()

    async def _drive(self, task_id: str, new: bool = False) -> None:
        if not await may_run(self.store, task_id):
            return
        workflow: Workflow | None = None
        try:
            workflow = await self._loader.get()
            await self.housekeeping.reconciled(workflow)
            await self._run(workflow, task_id, new)
            await self.housekeeping.ended(workflow, task_id)
            if self.store.lease is not None:
                # Its run here is over: another daemon may delete it now (`Deletion`).
                await self.store.release_leases([task_id])
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
            if not await still_ours(self.store, task_id):
                return  # another daemon runs it now: its run's failure here is not the task's
            await fail_task(self.store, task_id, reason, self.notifier)

    async def _run(self, workflow: Workflow, task_id: str, new: bool = False) -> None:
        """Run the task's workflow; while the disk is full, again after a pause, for a while.

        A run cut by a full disk lost nothing (finished steps are in the memo, an answer that
        could not be saved is held by the workflow), so the next run goes on from there.
        """
        delays = self.room.delays()
        while True:
            try:
                await workflow.run(task_id, new=new)
                return
            except Exception as exc:
                full = store_full(exc)
                if full is None:
                    raise
                new = False  # the cut run may have left a checkpoint to go on from
                delay = next(delays, None)
                if delay is None:
                    reason = f"the disk stayed full for over {self.room.patience_s:.0f}s: {full}"
                    await fail_when_written(self.store, task_id, reason, self.notifier, self.room)
                    return
                log.warning(
                    "task %s waits for disk space: %s; trying again in %.0fs", task_id, full, delay
                )
                await asyncio.sleep(delay)
