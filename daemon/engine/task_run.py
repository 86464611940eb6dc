"""One run of one task: plan -> streams as a DAG -> conflict review -> merge (-> approval).

`TaskRun` reads the task and its settings, assembles the parts of the run around one shared
`TaskContext` (the way to a model, the task's states, its streams, the human waits, the
scheduler, the conflict check, the merge gate) and drives them in order. It is what the
LangGraph program (`workflow`) runs for a task; a resumed run replays finished steps from the
memo and continues where the task stopped.

Every failure ends here with a message a person can act on: a `TaskFailed` (no valid plan,
failed streams, rejections used up) or any `ModelError` (a tier set up wrongly, a model nobody
could reach, an answer that never parsed) fails the task with a partial report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from daemon.engine.code.merge_point import CodeMerge
from daemon.engine.code.stream_runner import CodeStreams
from daemon.engine.code.task_code import CodeTask
from daemon.engine.code_hosting import CodeHosting
from daemon.engine.conflicts import ConflictCheck
from daemon.engine.context import TaskAttachments, TaskContext
from daemon.engine.ending import finalize, partial_report
from daemon.engine.errors import TaskFailed
from daemon.engine.gateway import HeldAnswers, ModelsFactory, Slots, TaskGateway
from daemon.engine.human import HumanSignals, HumanWaits, attention
from daemon.engine.lifecycle import WAITING, TaskStates, may_enter
from daemon.engine.merge import MergeGate
from daemon.engine.notify import Notifier
from daemon.engine.scheduler import Scheduler
from daemon.engine.settings import TaskSettings
from daemon.engine.stream_work import StreamWork
from daemon.engine.streams import StreamBook
from daemon.engine.usage import UsageRecorder
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import RunStart, Store, TaskRow
from roles.model_caller import ModelCaller
from roles.models.content import tier_sees_images
from roles.models.errors import ModelError
from roles.models.routing import check_tiers
from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import sequentialize
from roles.planner import make_plan
from roles.project import ProjectContext
from roles.prompts import TaskBrief

__all__ = ["Collaborators", "TaskRun"]

log = logging.getLogger("tierd.tasks")


@dataclass(frozen=True)
class Collaborators:
    """What the engine is given by the daemon: the store, the governor, the human's signals,
    the notification hook, and how a task's calls reach the models."""

    store: Store
    slots: Slots
    signals: HumanSignals
    notifier: Notifier | None = None
    models: ModelsFactory = ModelCaller
    #: Answers a full disk kept from being saved, for the task's next run to save.
    held: HeldAnswers = field(default_factory=HeldAnswers)
    #: Where code tasks' worktrees go, what their commands must not read, where they work.
    code: CodeHosting = field(default_factory=CodeHosting)


class TaskRun:
    """One execution of one task's workflow."""

    def __init__(self, parts: Collaborators, task_id: str) -> None:
        self.parts = parts
        self.store = parts.store
        self.task_id = task_id

    async def drive(self) -> dict[str, Any]:
        # A task with no plan yet enters planning in the transaction that reads it.
        start = await self.store.run_start(self.task_id, (TaskState.planning, _unplanned))
        if start is None:
            raise TaskFailed(f"task {self.task_id} vanished from the store")
        row = start.task
        if start.moved_from is not None:
            log.info("task %s: %s -> %s", self.task_id, start.moved_from, row.state)
        if TaskState(row.state) in TERMINAL:
            return {"state": row.state}
        settings = TaskSettings.from_json(row.settings_json)
        log.info("task %s: running (from %s)", self.task_id, row.state)
        try:
            await self._run(start, settings)
        except (TaskFailed, ModelError) as exc:
            log.warning("task %s failed: %s", self.task_id, exc)
            # A ModelError here: every model of a tier failed (retries and fallbacks used up),
            # an answer never parsed, or a tier is set up wrongly, outside any one stream
            # (the planner, the conflict check, the merge); a stream's own failure arrives
            # as a TaskFailed naming the stream.
            if await finalize(self.store, self.task_id, TaskState.failed, str(exc)):
                reason = f"task failed: {exc}"
                notifier = self.parts.notifier
                await attention(self.store, notifier, self.task_id, settings, "failed", reason)
            return {"state": "failed"}
        return {"state": "completed"}

    async def _run(self, start: RunStart, settings: TaskSettings) -> None:
        row = start.task
        tiers = settings.tiers()
        # Before any call: a model litellm cannot route fails the task now, not after the
        # planner has been paid; an unknown price is only a warning (its cost is "unknown").
        for warning in check_tiers(tiers):
            log.warning("task %s: %s", self.task_id, warning)
        states = TaskStates(self.store, self.task_id)
        book = StreamBook(self.store, self.task_id, tiers["executor"].model)
        human = HumanWaits(
            self.store,
            self.task_id,
            settings,
            states,
            book,
            self.parts.signals,
            self.parts.notifier,
            waiting=TaskState(row.state) in WAITING,
        )
        models = self.parts.models(tiers, self.task_id, UsageRecorder(self.store, self.task_id))
        gateway = TaskGateway(
            self.store,
            self.task_id,
            self.parts.slots,
            models,
            human.progress,
            self.parts.held,
            saved_keys=start.step_keys,
        )
        # Which tiers see images decides what each prompt carries of the attachments.
        attachments = TaskAttachments(
            start.attachments,
            planner_sees_images=tier_sees_images(tiers["planner"]),
            executor_sees_images=tier_sees_images(tiers["executor"]),
        )
        ctx = TaskContext.of(
            self.store, row, settings, gateway, gateway.settled, attachments, gateway.saved
        )
        code = await self._code_streams(ctx)
        try:
            await self._work(ctx, row, states, book, human, code)
        finally:
            if code is not None:
                await code.release()

    async def _work(
        self,
        ctx: TaskContext,
        row: TaskRow,
        states: TaskStates,
        book: StreamBook,
        human: HumanWaits,
        code: CodeStreams | None,
    ) -> None:
        work = StreamWork(ctx, book, human, code)
        plan = await self._planning(ctx, code.project if code else None)
        ctx.attachments.use_plan(plan)
        work.brief = TaskBrief(
            row.goal, ctx.rules, row.context, plan, code.project if code else None
        )
        outputs = await Scheduler(ctx, states, book, work, human).execute(plan)
        if code is None:
            # A code task's streams own disjoint paths and their results are branches: the
            # text check for contradictions does not apply (their merge is git's).
            outputs = await ConflictCheck(ctx, states, book, work).review(plan, outputs)
        merging = CodeMerge(code) if code is not None else None
        result = await MergeGate(ctx, states, human, merging, work.brief).merge_and_approve(
            plan, outputs
        )
        fresh = await self.store.get_task(self.task_id)
        assert fresh is not None
        report = await partial_report(self.store, fresh, TaskState.completed, None)
        # leave_wait: an approved result leaves awaiting_approval for completed.
        if await states.move(
            TaskState.completed, leave_wait=True, result=result, report_json=json.dumps(report)
        ):
            log.info("task %s completed", self.task_id)

    async def _code_streams(self, ctx: TaskContext) -> CodeStreams | None:
        """The code side of a task with a repository (None for a text task)."""
        task = CodeTask.of(ctx.row.code_json)
        if task is None:
            return None
        hosting = self.parts.code
        if hosting.worktrees is None:
            raise TaskFailed("this daemon has no worktrees directory: it cannot run code tasks")
        code = CodeStreams(ctx, task, hosting.worktrees, hosting.private_dirs, hosting.sites)
        await code.open()
        return code

    async def _planning(self, ctx: TaskContext, project: ProjectContext | None) -> Plan:
        row = ctx.row
        if row.plan_json:
            return Plan.model_validate_json(row.plan_json)
        files = ctx.attachments
        outcome = await make_plan(
            ctx.call,
            row.goal,
            row.context,
            ctx.rules,
            # Images an executor (or a code stream's coder) cannot see need the planner's
            # description in the plan.
            replace(ctx.plan_rules, describe=files.needing_description()),
            ctx.settings.max_attempts,
            project=project,
            attachments=await files.contents(pictures=files.planner_sees_images),
            planner_sees_images=files.planner_sees_images,
            executors_see_images=files.executor_sees_images,
        )
        if outcome.plan is None:
            raise TaskFailed(
                f"no valid plan after {outcome.attempts} attempts: " + "; ".join(outcome.problems)
            )
        plan = sequentialize(outcome.plan) if ctx.settings.never else outcome.plan
        if files.rows:
            plan = files.delivered(plan)
        log.info(
            "task %s: planned %d stream(s) after %d attempt(s)",
            self.task_id,
            len(plan.streams),
            outcome.attempts,
        )
        # The plan and its event together: a resumed task skips planning once plan_json is
        # set, so an event written separately could be lost for good.
        await self.store.update_task(
            self.task_id,
            plan_json=plan.model_dump_json(),
            event=(
                "task.plan",
                {
                    "attempts": outcome.attempts,
                    "summary": plan.summary,
                    "streams": [_plan_event_stream(s) for s in plan.streams],
                },
            ),
        )
        return plan


def _plan_event_stream(spec: StreamSpec) -> dict[str, Any]:
    """A stream as the `task.plan` event lists it; with attachments, how each reaches it."""
    shown: dict[str, Any] = {"id": spec.id, "title": spec.title, "depends_on": spec.depends_on}
    if spec.attachment_delivery:
        shown["attachments"] = spec.attachment_delivery
    return shown


def _unplanned(row: TaskRow) -> bool:
    """Whether a run begins by planning `row` (it has no plan), and may say so."""
    return not row.plan_json and may_enter(row.state, TaskState.planning)
