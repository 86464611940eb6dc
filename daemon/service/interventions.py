"""What a client does to a task that is under way: cancel it, answer its questions, approve
or reject its result.

Each action is checked against the task's state first, for a clear refusal, and then done as
one atomic store call that checks again: the task moves on its own meanwhile, and only the
store's answer says whether the action took. The write runs detached, so a client that goes
away cannot leave an answer stored but its stream never woken.

Racing actions (two cancels, a cancel and an answer, an approval and a rejection, any of them
and the task ending on its own) each get success or the wrong-state error (-32002 / 409),
never an internal error: a move the store refuses because the task moved first is that
wrong-state error. Cancels of one task take turns, so of two racing cancels exactly one
succeeds and the other is told the task is already canceled, as a cancel sent after it is.
Approvals of one task take turns too: applying a code task's result reads the user's branch
and then moves it, and a result is applied once, whoever asks again (`code_result`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.service.admission import KeyLocks
from daemon.service.code_result import applied_to_branch, apply_result
from daemon.service.detached import Detached
from daemon.service.errors import InvalidParams, InvalidState
from daemon.service.params import AnswerParams, ApproveParams, TaskIdParams
from daemon.service.ports import Engine
from daemon.service.results import Answered, Canceled, Decided
from daemon.service.task_views import find_task
from daemon.store.states import TERMINAL, IllegalTransition, TaskState
from daemon.store.store import QuestionRow, Store, TaskRow


def _not_live(row: TaskRow) -> InvalidState:
    return InvalidState(
        f"task {row.id} is already {row.state}; only a live task can be canceled",
        {"task_id": row.id, "state": row.state},
    )


def _applied_of(row: TaskRow) -> dict[str, Any] | None:
    """How the task's current result was applied, if an approval recorded it."""
    code = json.loads(row.code_json) if row.code_json else {}
    applied = code.get("applied")
    head = (code.get("result") or {}).get("head")
    if isinstance(applied, dict) and head and applied.get("head") == head:
        return applied
    return None


def _not_waiting(row: TaskRow) -> InvalidState:
    """The refusal of an approval out of turn; it says so when the result was applied."""
    applied = _applied_of(row)
    data: dict[str, Any] = {"task_id": row.id, "state": row.state}
    said = ""
    if applied is not None:
        data["applied"] = applied
        how = applied.get("how")
        if how == "merge":
            said = (
                f"; its result was already applied: merged into {applied.get('branch')} "
                f"(commit {str(applied.get('commit'))[:12]})"
            )
        elif how == "patch":
            said = f"; its result was already applied: written to {applied.get('path')}"
        else:
            said = f"; its result was already approved on branch {applied.get('branch')}"
    return InvalidState(f"task {row.id} is {row.state}, not awaiting_approval{said}", data)


def _check_answers(row: TaskRow, questions: list[QuestionRow], answers: dict[str, str]) -> None:
    """Refuse answers to no open question, to unknown or answered questions, or blank ones."""
    known = {q.id for q in questions}
    open_ids = {q.id for q in questions if q.answer is None}
    if not open_ids:
        raise InvalidState(
            f"task {row.id} has no open questions (state {row.state})",
            {"task_id": row.id, "state": row.state},
        )
    unknown = sorted(set(answers) - known)
    if unknown:
        raise InvalidParams(
            f"answers: unknown question ids: {', '.join(unknown)}; "
            f"open: {', '.join(sorted(open_ids))}",
            {"field": "answers", "unknown": unknown, "open": sorted(open_ids)},
        )
    blank = sorted(qid for qid, text in answers.items() if not text.strip())
    if blank:
        raise InvalidParams(
            f"answers: blank answer for {', '.join(blank)}",
            {"field": "answers", "blank": blank},
        )
    closed = sorted(set(answers) - open_ids)
    if closed:
        raise InvalidState(
            f"already answered: {', '.join(closed)}; open: {', '.join(sorted(open_ids))}",
            {"task_id": row.id, "state": row.state, "answered": closed},
        )


class Interventions:
    """`task/cancel`, `task/answer` and `task/approve`."""

    def __init__(self, store: Store, engine: Engine, detached: Detached, patches: Path) -> None:
        self._store = store
        self._engine = engine
        self._detached = detached
        #: Where `apply: "patch"` writes a code task's patch.
        self._patches = patches
        # One cancel per task at a time: the engine's cancellation reads the state and then
        # writes it, so two at once would both find the task live.
        self._cancel_turns = KeyLocks()
        # One approval per task at a time: applying reads the user's branch, then moves it.
        self._approve_turns = KeyLocks()

    async def cancel(self, params: TaskIdParams) -> Canceled:
        row = await find_task(self._store, params.task_id)
        if TaskState(row.state) in TERMINAL:
            raise _not_live(row)
        # The turn is taken inside the detached work: a client that goes away must not hand
        # the turn on while its cancellation still runs.
        return await self._detached.run(self._cancel_in_turn(row.id))

    async def _cancel_in_turn(self, task_id: str) -> Canceled:
        async with self._cancel_turns.hold(task_id):
            row = await find_task(self._store, task_id)
            if TaskState(row.state) in TERMINAL:  # a racing cancel came first, or it ended
                raise _not_live(row)
            return await self._cancel(task_id)

    async def _cancel(self, task_id: str) -> Canceled:
        try:
            await self._engine.cancel(task_id)
        except IllegalTransition:
            pass  # the task ended on its own meanwhile: the state read below says how
        row = await find_task(self._store, task_id)
        if TaskState(row.state) not in TERMINAL:
            try:
                await self._store.transition(
                    row.id, TaskState.canceled, reason="canceled by client"
                )
            except IllegalTransition:
                pass  # as above: it ended between the read and the write
            row = await find_task(self._store, task_id)
        if row.state != TaskState.canceled:
            raise _not_live(row)  # it ended on its own between the check and the cancellation
        return Canceled(task_id=row.id, state=TaskState.canceled)

    async def answer(self, params: AnswerParams) -> Answered:
        row = await find_task(self._store, params.task_id)
        if TaskState(row.state) in TERMINAL:
            raise InvalidState(
                f"task {row.id} is {row.state}; it takes no more answers",
                {"task_id": row.id, "state": row.state},
            )
        _check_answers(row, await self._store.questions_of(row.id), params.answers)
        return await self._detached.run(self._answer(row.id, params.answers))

    async def _answer(self, task_id: str, answers: dict[str, str]) -> Answered:
        store = self._store
        done = await store.answer_questions(task_id, answers, resume=TaskState.running.value)
        if not done:  # answered (or the task ended) since the checks above
            row = await find_task(store, task_id)
            raise InvalidState(
                f"task {task_id} took none of these answers (state "
                f"{row.state}): they were answered meanwhile or it ended",
                {"task_id": task_id, "state": row.state},
            )
        await store.append_event(task_id, "task.answered", {"questions": done})
        self._engine.wake(task_id)
        return Answered(task_id=task_id, answered=done)

    async def approve(self, params: ApproveParams) -> Decided:
        row = await find_task(self._store, params.task_id)
        if row.state != TaskState.awaiting_approval:
            raise _not_waiting(row)
        # In turn per task: two approvals at once would both find the result not applied.
        return await self._detached.run(self._approve_in_turn(row.id, params))

    async def _approve_in_turn(self, task_id: str, params: ApproveParams) -> Decided:
        async with self._approve_turns.hold(task_id):
            row = await find_task(self._store, task_id)
            if row.state != TaskState.awaiting_approval:  # decided (and ended) meanwhile
                raise _not_waiting(row)
            return await self._approve(task_id, params)

    async def _apply(self, task_id: str, params: ApproveParams) -> dict[str, Any] | None:
        """Apply a code task's result as asked, before the approval is recorded: a refusal
        (409 naming the files) leaves the task waiting and the user's repository as it was.

        Applied once: a result already applied (an approval whose decision was not stored,
        its daemon killed) is neither applied nor recorded again, only reported.
        """
        row = await find_task(self._store, task_id)
        if params.decision != "approve" or (params.apply is None and not row.code_json):
            if params.apply is not None:
                raise InvalidParams("apply: only an approval applies a result", {"field": "apply"})
            if params.decision == "reject":
                await self._refuse_reject_if_merged(row)
            return None
        recorded = _applied_of(row)
        if recorded is not None:
            return {**recorded, "already": True}
        applied = await apply_result(row, params.apply or "branch", self._patches, self._store)
        await self._store.set_task_code(task_id, {"applied": applied})
        await self._store.append_event(task_id, "task.applied", applied)
        return applied

    async def _refuse_reject_if_merged(self, row: TaskRow) -> None:
        """A result an earlier approval merged into the user's branch is not theirs to reject
        any more (their branch holds it): say so instead of revising it behind their back."""
        if not row.code_json:
            return
        merged = await applied_to_branch(row)
        if merged is not None:
            raise InvalidState(
                f"task {row.id}: its result is already merged into your branch "
                f"{merged['branch']} (commit {merged['commit'][:12]}) by an earlier approval; "
                "approve to record it",
                {"task_id": row.id, "state": row.state, "applied": merged},
            )

    async def _approve(self, task_id: str, params: ApproveParams) -> Decided:
        applied = await self._apply(task_id, params)
        decision = {"decision": params.decision, "comment": params.comment}
        state, round_, recorded = await self._store.decide(
            task_id,
            decision,
            waiting=TaskState.awaiting_approval.value,
            reject_to=TaskState.merging.value,
        )
        if not recorded:
            if state != TaskState.awaiting_approval:
                raise InvalidState(
                    f"task {task_id} is {state}, not awaiting_approval",
                    {"task_id": task_id, "state": state},
                )
            raise InvalidState(
                f"task {task_id} already has a decision on this result "
                f"(revision {round_}); it is acting on it",
                {"task_id": task_id, "state": state, "revision": round_},
            )
        await self._store.append_event(task_id, "task.decision", {**decision, "revision": round_})
        self._engine.wake(task_id)
        return Decided(task_id=task_id, decision=params.decision, applied=applied)
