"""The life of a task as a LangGraph program: plan -> streams as a DAG -> review -> merge.

Definition only; `runner.py` decides when it runs. The program is a LangGraph functional-API
`entrypoint` with a SQLite checkpointer in durable ("sync") mode; every model call is a
LangGraph `task`. Streams are coroutines that start the moment their own dependencies are
done (no waves, no barriers) and each passes the daemon-wide governor for every model call.

Why a step memo beside the checkpointer: LangGraph identifies a task call by its position in
the order of calls, and parallel streams finish in a different order on every run, so after a
crash a saved result could not always be matched to its call. Every call therefore has a
stable key (`exec:<stream>:r<round>:a<attempt>`, ...) and its finished answer is written to
the store's `steps` table inside the task itself; a resumed task reads it back instead of
calling the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.func import entrypoint, task
from pydantic import BaseModel

from daemon.engine.notify import Notifier
from daemon.governor.governor import Governor
from daemon.store.states import TERMINAL, IllegalTransition, TaskState, can_move
from daemon.store.store import QuestionRow, Store, TaskRow, UsageRow
from roles import orchestrator
from roles.calls import CallOutput
from roles.executor import execute
from roles.models.gateway import (
    CallRecord,
    ModelCallError,
    ModelConfigError,
    ModelTier,
    call_model,
    premium_cost,
)
from roles.plan.schema import ExecutorReply, Plan, StreamSpec
from roles.plan.validator import (
    PlanRules,
    is_code_shaped,
    sequentialize,
    topological_order,
    validate_plan,
)
from roles.planner import make_plan
from roles.prompts import PromptRules
from roles.report import StreamFacts, UsageFacts, build_report

#: Seconds between two looks at the store while waiting for a human, should a wake-up be lost.
HUMAN_RECHECK_S = 30.0


class StreamFailed(Exception):
    """A stream could not produce an accepted output; dependants cannot run."""


class TaskFailed(Exception):
    pass


def _nested(settings: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in settings.items() if k.startswith(prefix)}


def _task_name(key: str) -> str:
    return "call_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


#: Task states in which a task waits for a human. Only a human's action (an answer, a
#: decision), the work that action unblocks, a failure or a cancellation moves a task out.
WAITING = frozenset({TaskState.input_required, TaskState.awaiting_approval})
#: Stream states that are final; a canceled task marks its other streams canceled.
STREAM_FINAL = frozenset({"accepted", "fixed", "failed", "canceled"})


async def attention(
    store: Store, notifier: Notifier | None, row: TaskRow, kind: str, reason: str, **data: Any
) -> None:
    """A task needs a human: the `attention` event, and the notification hook if set."""
    await store.append_event(row.id, "attention", {"kind": kind, "reason": reason, **data})
    if notifier is not None:
        settings = json.loads(row.settings_json or "{}")
        keys = [v for k, v in settings.items() if k.endswith(".api_key_env") and v]
        notifier.notify(settings.get("notify.command", ""), row.id, reason, keys)


async def fail_task(
    store: Store, task_id: str, reason: str, notifier: Notifier | None = None
) -> None:
    """Mark a task failed with a partial report, whatever stage it was in."""
    row = await store.get_task(task_id)
    if row is None or TaskState(row.state) in TERMINAL:
        return
    report = await partial_report(store, row, TaskState.failed, reason)
    await store.transition(
        task_id, TaskState.failed, reason=reason, error=reason, report_json=json.dumps(report)
    )
    await attention(store, notifier, row, "failed", f"task failed: {reason}")


async def partial_report(
    store: Store, row: TaskRow, state: str, error: str | None
) -> dict[str, Any]:
    settings = json.loads(row.settings_json or "{}")
    plan = Plan.model_validate_json(row.plan_json) if row.plan_json else None
    streams = await store.streams_of(row.id)
    usage = await store.usage_of(row.id)
    return build_report(
        state=state,
        plan=plan,
        streams=[
            StreamFacts(
                s.stream_id,
                s.title,
                s.state,
                s.output,
                s.verdict,
                s.reason,
                s.rounds,
                s.started_at,
                s.ended_at,
                s.parent_id,
            )
            for s in streams
        ],
        usage=[
            UsageFacts(
                u.role,
                u.purpose,
                u.stream_id,
                u.model,
                u.prompt_tokens,
                u.completion_tokens,
                u.cost_usd,
                u.latency_s,
                u.outcome,
            )
            for u in usage
        ],
        premium_model=settings.get("models.orchestrator.model", ""),
        premium_cost=premium_cost,
        started_at=row.created_at,
        ended_at=time.time(),
        settings=settings,
        error=error,
    )


class Workflow:
    """Holds the compiled LangGraph program and its checkpointer."""

    def __init__(self, store: Store, governor: Governor, runner: Any) -> None:
        self.store = store
        self.governor = governor
        self.runner = runner
        self._conn: aiosqlite.Connection | None = None
        self._graph: Any = None

    async def open(self, checkpoints: Path | None) -> None:
        self._conn = await aiosqlite.connect(str(checkpoints) if checkpoints else ":memory:")
        saver = AsyncSqliteSaver(self._conn)
        await saver.setup()

        @entrypoint(checkpointer=saver)
        async def tierd_task(task_id: str) -> dict[str, Any]:
            return await TaskRun(self, task_id).drive()

        self._graph = tierd_task

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def run(self, task_id: str) -> None:
        config = {"configurable": {"thread_id": task_id}}
        state = await self._graph.aget_state(config)
        # A run cut short by a crash has pending work in its checkpoint: continue that run.
        # Otherwise start one; the step memo makes both paths skip finished calls.
        payload = None if state.next else task_id
        await self._graph.ainvoke(payload, config, durability="sync")

    async def finalize(self, task_id: str, state: TaskState, reason: str) -> None:
        """End a task as failed or canceled, keeping what was done in a partial report."""
        row = await self.store.get_task(task_id)
        if row is None or TaskState(row.state) in TERMINAL:
            return
        if state == TaskState.canceled:
            # Streams that were running, waiting or not started yet will never finish.
            now = time.time()
            for s in await self.store.streams_of(task_id):
                if s.state not in STREAM_FINAL:
                    await self.store.upsert_stream(
                        task_id,
                        s.stream_id,
                        event=(
                            "stream.state",
                            {"stream_id": s.stream_id, "state": "canceled", "parent": s.parent_id},
                        ),
                        state="canceled",
                        ended_at=now if s.started_at else None,
                    )
        report = await partial_report(self.store, row, state, reason)
        await self.store.transition(
            task_id,
            state,
            reason=reason,
            report_json=json.dumps(report),
            error=reason if state == TaskState.failed else None,
        )


@dataclass
class StreamState:
    spec: StreamSpec
    depth: int
    parent: str | None
    # pending | working | waiting (for a human) | split (its sub-streams work) | done | failed
    status: str = "pending"
    #: The id of the question a waiting stream waits on.
    question: str | None = None
    # A sub-stream of a split also sees what its parent was given.
    inherited: dict[str, str] = field(default_factory=dict)
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TaskRun:
    """One execution of one task's workflow."""

    def __init__(self, wf: Workflow, task_id: str) -> None:
        self.wf = wf
        self.store = wf.store
        self.task_id = task_id
        self.streams: dict[str, StreamState] = {}
        self.phase = TaskState.running
        self._usage_tasks: set[asyncio.Task[None]] = set()
        # Serialises the decisions "the task now waits for a human" and "it works again",
        # so that an answer arriving while the first is being made is never lost.
        self._wait_lock = asyncio.Lock()
        # The task may be in input_required/awaiting_approval (true at the start: a resumed
        # task may be waiting); a real model call then first moves it back to work.
        self._maybe_waiting = True

    # --- setup -----------------------------------------------------------------------------

    async def _load(self) -> TaskRow:
        row = await self.store.get_task(self.task_id)
        if row is None:
            raise TaskFailed(f"task {self.task_id} vanished from the store")
        self.row = row
        s = self.settings = json.loads(row.settings_json or "{}")
        self.tiers = {
            role: ModelTier.from_config(_nested(s, f"models.{role}."), where=f"models.{role}.")
            for role in ("orchestrator", "planner", "executor")
        }
        code = is_code_shaped(row.goal)
        self.never = s.get("rules.parallelize") == "never"
        self.split_depth = 0 if self.never else int(s.get("plan.split_depth", 2))
        self.prompt_rules = PromptRules(
            instructions=list(s.get("rules.instructions", [])),
            parallelize=s.get("rules.parallelize", "when-possible"),
            coupled=[list(g) for g in s.get("rules.coupled", [])],
            max_streams=int(s.get("plan.max_streams", 8)),
            tests_first=code,
            split_depth_left=self.split_depth,
        )
        self.plan_rules = PlanRules(
            max_streams=int(s.get("plan.max_streams", 8)),
            coupled=[list(g) for g in s.get("rules.coupled", [])],
            parallelize=s.get("rules.parallelize", "when-possible"),
            require_tests_first=code,
        )
        self.goal_line = row.goal.strip().splitlines()[0][:300]
        return row

    async def _move(
        self,
        state: TaskState,
        reason: str | None = None,
        *,
        leave_wait: bool = False,
        **fields: Any,
    ) -> bool:
        """Move the task to `state` if that is a legal move; True if the state changed.

        A resumed task replays its finished steps from the memo and passes phases it had
        already left (running while it was merging): it keeps its later state. A task that
        waits for a human keeps waiting unless `leave_wait`: a replay must not make a
        waiting task look busy (and then announce the same wait again).
        """
        row = await self.store.get_task(self.task_id)
        if row is None:
            return False
        current = TaskState(row.state)
        if current in TERMINAL:
            return False
        if current != state and can_move(current, state) and (current not in WAITING or leave_wait):
            try:
                await self.store.transition(self.task_id, state, reason=reason, **fields)
            except IllegalTransition:  # it moved meanwhile (cancel): leave it alone
                return False
            return True
        changed = {k: v for k, v in fields.items() if getattr(row, k) != v}
        if changed:
            await self.store.update_task(self.task_id, **changed)
        return False

    async def _progress(self) -> None:
        """About to do real work: a task still marked as waiting for a human works again.

        The answer that unblocked a stream normally moves the task out of input_required
        itself (in the same transaction); this covers the rest: the wait was decided while
        the answer was arriving, or the answer came while the daemon was down.
        """
        if not self._maybe_waiting:
            return
        async with self._wait_lock:
            row = await self.store.get_task(self.task_id)
            if row is not None and TaskState(row.state) in WAITING:
                await self._move(self.phase, reason="work resumed", leave_wait=True)
            self._maybe_waiting = False

    async def _attention(self, kind: str, reason: str, **data: Any) -> None:
        await attention(self.store, self.wf.runner.notifier, self.row, kind, reason, **data)

    # --- the one way a role reaches a model ------------------------------------------------

    async def call(
        self,
        role: str,
        purpose: str,
        messages: list[dict[str, str]],
        *,
        key: str,
        stream_id: str | None = None,
        round: int = 0,
        response_model: type[BaseModel] | None = None,
    ) -> CallOutput:
        cached = await self.store.get_step(self.task_id, key)
        if cached is not None:
            return CallOutput(cached["text"], cached.get("data"))

        async def body(_key: str) -> dict[str, Any]:
            again = await self.store.get_step(self.task_id, key)
            if again is not None:
                return again
            await self._progress()
            async with self.wf.governor.slot(self.task_id):
                result = await call_model(
                    self.tiers[role],
                    messages,
                    role=role,
                    purpose=purpose,
                    task_id=self.task_id,
                    stream_id=stream_id,
                    round=round,
                    response_model=response_model,
                    on_record=self._record,
                )
            value = {
                "text": result.text,
                "data": result.parsed.model_dump() if result.parsed is not None else None,
            }
            # Written inside the task: once this commits, the call is never made again.
            await self.store.put_step(self.task_id, key, value)
            return value

        value = await task(name=_task_name(key))(body)(key)
        return CallOutput(value["text"], value.get("data"))

    async def _record(self, rec: CallRecord) -> None:
        await self.store.record_usage(
            UsageRow(
                task_id=self.task_id,
                stream_id=rec.stream_id,
                role=rec.role,
                purpose=rec.purpose,
                model=rec.model,
                prompt_tokens=rec.prompt_tokens,
                completion_tokens=rec.completion_tokens,
                cost_usd=rec.cost_usd,
                latency_s=rec.latency_s,
                outcome=rec.outcome,
                attempts=rec.attempts,
                error=rec.error,
                started_at=rec.started_at,
            )
        )
        await self.store.append_event(
            self.task_id,
            "model.call",
            {
                "role": rec.role,
                "purpose": rec.purpose,
                "stream_id": rec.stream_id,
                "model": rec.model,
                "prompt_tokens": rec.prompt_tokens,
                "completion_tokens": rec.completion_tokens,
                "cost_usd": rec.cost_usd,
                "latency_s": round(rec.latency_s, 4),
                "outcome": rec.outcome,
            },
        )

    # --- the program -----------------------------------------------------------------------

    async def drive(self) -> dict[str, Any]:
        row = await self._load()
        if TaskState(row.state) in TERMINAL:
            return {"state": row.state}
        try:
            plan = await self._planning(row)
            outputs = await self._execute(plan)
            outputs = await self._conflict_review(plan, outputs)
            result = await self._merge_and_approve(plan, outputs)
        except (TaskFailed, ModelCallError, ModelConfigError) as exc:
            # ModelCallError: every model of a tier failed (retries and fallbacks used up)
            # outside any one stream, e.g. for the planner or the merge.
            await self.wf.finalize(self.task_id, TaskState.failed, str(exc))
            await self._attention("failed", f"task failed: {exc}")
            return {"state": "failed"}
        fresh = await self.store.get_task(self.task_id)
        assert fresh is not None
        report = await partial_report(self.store, fresh, TaskState.completed, None)
        # leave_wait: an approved result leaves awaiting_approval for completed.
        await self._move(
            TaskState.completed, leave_wait=True, result=result, report_json=json.dumps(report)
        )
        return {"state": "completed"}

    async def _planning(self, row: TaskRow) -> Plan:
        if row.plan_json:
            return Plan.model_validate_json(row.plan_json)
        await self._move(TaskState.planning)
        outcome = await make_plan(
            self.call,
            row.goal,
            row.context,
            self.prompt_rules,
            self.plan_rules,
            int(self.settings.get("plan.max_attempts", 3)),
        )
        if outcome.plan is None:
            raise TaskFailed(
                f"no valid plan after {outcome.attempts} attempts: " + "; ".join(outcome.problems)
            )
        plan = sequentialize(outcome.plan) if self.never else outcome.plan
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
                    "streams": [
                        {"id": s.id, "title": s.title, "depends_on": s.depends_on}
                        for s in plan.streams
                    ],
                },
            ),
        )
        return plan

    # --- streams ---------------------------------------------------------------------------

    async def _stream_update(
        self, st: StreamState, state: str, *, step: tuple[str, Any] | None = None, **fields: Any
    ) -> None:
        """Save the stream's row and its `stream.state` event (and `step`, the memo of its
        finished output) in one transaction: a kill never separates them."""
        data = {"stream_id": st.spec.id, "state": state, "parent": st.parent}
        data.update({k: v for k, v in fields.items() if k in {"verdict", "reason", "rounds"}})
        if state == "running":
            data["model"] = self.tiers["executor"].model
        await self.store.upsert_stream(
            self.task_id, st.spec.id, step=step, event=("stream.state", data), state=state, **fields
        )

    async def _register(self, specs: list[StreamSpec], depth: int, parent: str | None) -> None:
        for spec in specs:
            st = StreamState(spec, depth, parent)
            self.streams[spec.id] = st
            existing = {s.stream_id: s for s in await self.store.streams_of(self.task_id)}
            if spec.id not in existing:
                await self.store.upsert_stream(
                    self.task_id,
                    spec.id,
                    title=spec.title,
                    parent_id=parent,
                    depth=depth,
                    spec_json=spec.model_dump_json(),
                    state="pending",
                )

    async def _execute(self, plan: Plan) -> dict[str, str]:
        await self._move(TaskState.running)
        await self._register(plan.streams, 0, None)
        return await self._run_dag(plan.streams)

    async def _run_dag(self, specs: list[StreamSpec]) -> dict[str, str]:
        order = topological_order(Plan(streams=specs))
        runners = {sid: asyncio.create_task(self._run_stream(self.streams[sid])) for sid in order}
        try:
            await asyncio.gather(*runners.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for t in runners.values():
                t.cancel()
            raise
        failed = [sid for sid, t in runners.items() if t.exception() is not None]
        if failed:
            reasons = "; ".join(f"{sid}: {runners[sid].exception()}" for sid in failed)
            raise TaskFailed(f"{len(failed)} stream(s) failed: {reasons}")
        return {sid: runners[sid].result() for sid in order}

    async def _run_stream(self, st: StreamState) -> str:
        try:
            deps: dict[str, str] = dict(st.inherited)
            for dep in st.spec.depends_on:
                try:
                    deps[dep] = await self.streams[dep].future
                except Exception as exc:
                    raise StreamFailed(f"dependency {dep!r} failed") from exc
            output = await self._work(st, deps)
            st.status = "done"
            st.future.set_result(output)
            await self._check_waiting()
            return output
        except asyncio.CancelledError:
            st.future.cancel()
            raise
        except Exception as exc:
            st.status = "failed"
            st.future.set_exception(StreamFailed(str(exc)))
            st.future.exception()  # mark retrieved: dependants report it themselves
            with contextlib.suppress(Exception):
                await self._stream_update(
                    st, "failed", reason=str(exc)[:2000], ended_at=time.time()
                )
            await self._check_waiting()
            raise

    async def _work(self, st: StreamState, deps: dict[str, str]) -> str:
        spec = st.spec
        done = await self.store.get_step(self.task_id, f"stream:{spec.id}")
        if done is not None:
            return str(done["output"])
        st.status = "working"
        saved = {s.stream_id: s for s in await self.store.streams_of(self.task_id)}
        started = (
            saved[spec.id].started_at
            if spec.id in saved and saved[spec.id].started_at
            else time.time()
        )
        await self._stream_update(st, "running", started_at=started)
        max_rounds = int(self.settings.get("review.max_rounds", 2))
        round_, attempt = 0, 0
        feedback: str | None = None
        answers: dict[str, str] = {}
        may_split = st.depth < self.split_depth
        while True:
            reply, attempt = await self._execute_answered(
                st,
                deps,
                round_=round_,
                feedback=feedback,
                answers=answers,
                may_split=may_split,
                attempt=attempt,
            )
            if reply.kind == "split" and reply.streams:
                st.status = "split"  # its sub-streams do the work (and may ask questions)
                try:
                    output = await self._split(st, reply.streams, deps)
                finally:
                    st.status = "working"
                if output is None:  # an invalid split: do the stream whole instead
                    may_split = False
                    attempt += 1
                    continue
                verdict_name, reason = "accept", "all sub-streams accepted"
                break
            output = reply.output or ""
            await self._stream_update(st, "reviewing", rounds=round_ + 1)
            verdict = await orchestrator.review(
                self.call, spec, output, self.prompt_rules, round=round_
            )
            await self.store.append_event(
                self.task_id,
                "review.verdict",
                {
                    "stream_id": spec.id,
                    "verdict": verdict.verdict,
                    "reason": verdict.reason,
                    "round": round_,
                },
            )
            if verdict.verdict == "accept":
                verdict_name, reason = "accept", verdict.reason
                break
            if verdict.verdict == "fix":
                output = await orchestrator.fix(
                    self.call, spec, output, verdict, self.prompt_rules, round=round_
                )
                verdict_name, reason = "fix", verdict.reason
                break
            if verdict.verdict == "redo" and round_ < max_rounds:
                round_ += 1
                attempt = 0
                feedback = verdict.feedback or verdict.reason
                await self._stream_update(
                    st, "running", rounds=round_ + 1, verdict="redo", reason=verdict.reason
                )
                continue
            # Escalate: an explicit escalation, or redo rounds used up.
            question = verdict.question or (
                f"Stream '{spec.id}' ({spec.title}) did not pass review after "
                f"{round_ + 1} round(s): {verdict.reason}. How should it proceed?"
            )
            answer = await self._ask(st, question, f"esc:{spec.id}:r{round_}")
            round_ += 1
            attempt = 0
            feedback = f"{verdict.feedback or verdict.reason}\nThe human says: {answer}"
        await self._stream_update(
            st,
            "accepted" if verdict_name == "accept" else "fixed",
            step=(f"stream:{spec.id}", {"output": output}),
            output=output,
            verdict=verdict_name,
            reason=reason,
            rounds=round_ + 1,
            ended_at=time.time(),
        )
        return output

    async def _execute_answered(
        self,
        st: StreamState,
        deps: dict[str, str],
        *,
        round_: int,
        feedback: str | None,
        answers: dict[str, str],
        may_split: bool,
        attempt: int,
    ) -> tuple[ExecutorReply, int]:
        """Run the executor until it answers with something other than a question.

        Each question goes to the human and its answer into `answers`; returns the reply and
        the attempt number it came from.
        """
        while True:
            reply = await execute(
                self.call,
                st.spec,
                self.goal_line,
                deps,
                self.prompt_rules,
                round=round_,
                feedback=feedback,
                answers=answers or None,
                may_split=may_split,
                attempt=attempt,
            )
            if reply.kind != "question" or not reply.question:
                return reply, attempt
            answers[reply.question] = await self._ask(
                st, reply.question, f"q:{st.spec.id}:r{round_}:a{attempt}"
            )
            attempt += 1

    async def _split(
        self, st: StreamState, subs: list[StreamSpec], deps: dict[str, str]
    ) -> str | None:
        prefix = st.spec.id
        ids = {s.id for s in subs}
        renamed = [
            s.model_copy(
                update={
                    "id": f"{prefix}.{s.id}"[:64],
                    "depends_on": [f"{prefix}.{d}"[:64] for d in s.depends_on if d in ids],
                }
            )
            for s in subs
        ]
        rules = PlanRules(
            max_streams=self.plan_rules.max_streams,
            coupled=self.plan_rules.coupled,
            parallelize="when-possible",
            require_tests_first=False,
        )
        problems = validate_plan(Plan(streams=renamed), rules)
        await self.store.append_event(
            self.task_id,
            "stream.split",
            {
                "stream_id": prefix,
                "into": [s.id for s in renamed],
                "accepted": not problems,
                "problems": problems,
            },
        )
        if problems:
            return None
        await self._register(renamed, st.depth + 1, prefix)
        for sub in renamed:
            self.streams[sub.id].inherited = deps
        outputs = await self._run_dag(renamed)
        return "\n\n".join(f"## {s.title}\n\n{outputs[s.id]}" for s in renamed)

    # --- questions for the human -----------------------------------------------------------

    async def _ask(self, st: StreamState, question: str, key: str) -> str:
        """Ask the human; return the answer. Durable: the question is a row of the store, so
        a resumed task finds it again (answered meanwhile or still open) instead of asking
        twice."""
        qid = "q" + hashlib.sha256(f"{self.task_id}:{key}".encode()).hexdigest()[:10]

        async def answered() -> str | None:
            for q in await self.store.questions_of(self.task_id):
                if q.id == qid:
                    return q.answer
            return None

        existing = {q.id: q for q in await self.store.questions_of(self.task_id)}
        if qid in existing and existing[qid].answer is not None:
            return str(existing[qid].answer)
        if qid not in existing:
            await self.store.add_question(
                QuestionRow(
                    id=qid,
                    task_id=self.task_id,
                    stream_id=st.spec.id,
                    question=question,
                    created_at=time.time(),
                )
            )
            await self.store.append_event(
                self.task_id,
                "question",
                {"question_id": qid, "stream_id": st.spec.id, "question": question},
            )
        st.status, st.question = "waiting", qid
        await self._stream_update(st, "waiting")
        await self._check_waiting()
        while True:
            signal = self.wf.runner.human_signal(self.task_id)
            answer = await answered()
            if answer is not None:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUMAN_RECHECK_S):
                    await signal.wait()
        # From here the stream works again; its next model call moves the task out of
        # input_required if the answer did not already (see _progress).
        st.status, st.question = "working", None
        await self._stream_update(st, "running")
        return answer

    async def _check_waiting(self) -> None:
        """Move to input_required only when no stream can progress without an answer.

        Called whenever a stream starts to wait or ends. Streams still working (or queued for
        a governor slot), and streams whose dependencies are all done, can progress; a stream
        that split is represented by its sub-streams; a stream behind a waiting one cannot.
        """
        async with self._wait_lock:
            if not any(s.status == "waiting" for s in self.streams.values()):
                return
            open_q = [q for q in await self.store.questions_of(self.task_id) if q.answer is None]
            open_ids = {q.id for q in open_q}
            # No await from this scan to the move below: it is one consistent picture.
            for s in self.streams.values():
                if s.status == "working":
                    return
                if s.status == "waiting" and s.question not in open_ids:
                    return  # answered: it is about to resume
                if s.status == "pending" and all(
                    self.streams[d].status == "done" for d in s.spec.depends_on if d in self.streams
                ):
                    return
            # Set before the move: a stream that resumes from here on takes the lock in
            # _progress and moves the task back to work after this move, never before it.
            self._maybe_waiting = True
            if not await self._move(
                TaskState.input_required, reason=f"{len(open_q)} open question(s)"
            ):
                return  # already waiting (a resumed task), or it cannot wait now
            await self._attention(
                "questions",
                f"{len(open_q)} question(s) need an answer: "
                + "; ".join(f"{q.stream_id}: {q.question}" for q in open_q),
                questions=[
                    {"id": q.id, "stream_id": q.stream_id, "question": q.question} for q in open_q
                ],
            )

    # --- review of everything together, merge, approval ------------------------------------

    async def _conflict_review(self, plan: Plan, outputs: dict[str, str]) -> dict[str, str]:
        max_rounds = int(self.settings.get("review.max_rounds", 2))
        top = {s.id: outputs[s.id] for s in plan.streams}
        self.phase = TaskState.reviewing
        await self._move(TaskState.reviewing)
        for check in range(max_rounds + 1):
            report = await orchestrator.check_conflicts(
                self.call,
                self.row.goal,
                plan,
                top,
                self.prompt_rules,
                round=check,
                context=self.row.context,
            )
            await self.store.append_event(
                self.task_id,
                "review.conflicts",
                {"round": check, "conflicts": [c.model_dump() for c in report.conflicts]},
            )
            redo = sorted({sid for c in report.conflicts for sid in c.redo if sid in top})
            if not redo or check == max_rounds:
                break
            self.phase = TaskState.running
            await self._move(TaskState.running, reason=f"conflict: redo {', '.join(redo)}")
            feedback = {
                sid: "; ".join(
                    c.feedback or c.description for c in report.conflicts if sid in c.redo
                )
                for sid in redo
            }
            redone = await asyncio.gather(
                *(self._redo(self.streams[sid], feedback[sid], check) for sid in redo)
            )
            top.update(dict(zip(redo, redone, strict=True)))
            self.phase = TaskState.reviewing
            await self._move(TaskState.reviewing)
        return top

    async def _redo(self, st: StreamState, feedback: str, check: int) -> str:
        key = f"conflict-redo:{st.spec.id}:{check}"
        done = await self.store.get_step(self.task_id, key)
        if done is not None:
            return str(done["output"])
        deps = {d: await self.streams[d].future for d in st.spec.depends_on}
        st.status = "working"
        try:
            await self._stream_update(st, "running", verdict="redo", reason=feedback[:2000])
            round_ = 100 + check  # distinct memo keys from the stream's own review rounds
            reply, _ = await self._execute_answered(
                st,
                deps,
                round_=round_,
                feedback=feedback,
                answers={},
                may_split=False,
                attempt=0,
            )
            output = reply.output or ""
            verdict = await orchestrator.review(
                self.call, st.spec, output, self.prompt_rules, round=round_
            )
            if verdict.verdict == "fix":
                output = await orchestrator.fix(
                    self.call, st.spec, output, verdict, self.prompt_rules, round=round_
                )
            saved = {s.stream_id: s for s in await self.store.streams_of(self.task_id)}
            rounds = (saved[st.spec.id].rounds if st.spec.id in saved else 1) + 1
            await self._stream_update(
                st,
                "accepted" if verdict.verdict == "accept" else "fixed",
                step=(key, {"output": output}),
                output=output,
                verdict=verdict.verdict,
                reason=f"after conflict review: {verdict.reason}",
                rounds=rounds,
                ended_at=time.time(),
            )
        finally:
            st.status = "done"
        return output

    async def _merge_and_approve(self, plan: Plan, outputs: dict[str, str]) -> str:
        """The merge, then the optional approval gate: a rejection sends the result back to
        the orchestrator with the human's comment, up to review.max_revisions times."""
        approval = self.settings.get("review.approval", "none")
        max_revisions = int(self.settings.get("review.max_revisions", 2))
        feedback: str | None = None
        result: str | None = None
        revision = 0
        self.phase = TaskState.merging
        await self._move(TaskState.merging)
        while True:
            result = await orchestrator.merge(
                self.call,
                self.row.goal,
                plan,
                outputs,
                self.prompt_rules,
                revision=revision,
                feedback=feedback,
                previous_result=result,
            )
            if approval != "required":
                return result
            decision = await self._await_decision(result, revision)
            if decision["decision"] == "approve":
                return result
            comment = (decision.get("comment") or "").strip()
            if revision >= max_revisions:
                raise TaskFailed(
                    f"the result was rejected {revision + 1} time(s); review.max_revisions "
                    f"({max_revisions}) allows no further revision. Last comment: "
                    f"{comment or '(none)'}"
                )
            feedback = comment or "The human rejected the result without a comment."
            revision += 1
            # The rejection itself moved the task to merging (Store.decide); a revised merge
            # follows at once.

    async def _await_decision(self, result: str, revision: int) -> dict[str, Any]:
        """Wait for the human's decision on merged result number `revision`.

        Durable: the decision is the step `approval:<revision>`, written by the service
        only while the task is in awaiting_approval and `approval_round` names this
        revision. Both are written here before the task starts to wait, so a decision is
        always taken on the result the human saw, and a resumed task finds it again.
        """
        key = f"approval:{revision}"
        decision = await self.store.get_step(self.task_id, key)
        if decision is not None:
            return decision
        await self.store.put_step(self.task_id, "approval_round", revision)
        self._maybe_waiting = True
        if await self._move(
            TaskState.awaiting_approval,
            reason=f"result ready for approval (revision {revision})",
            result=result,
        ):
            await self._attention(
                "approval",
                "result awaits approval" + (f" (revision {revision})" if revision else ""),
                revision=revision,
            )
        while True:
            signal = self.wf.runner.human_signal(self.task_id)
            decision = await self.store.get_step(self.task_id, key)
            if decision is not None:
                return decision
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUMAN_RECHECK_S):
                    await signal.wait()
