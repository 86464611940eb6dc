"""Waiting for a human: questions, the approval decision, and telling the human.

A task moves to input_required only when no stream can progress without an answer; it moves to
awaiting_approval with the merged result it wants decided. Both waits are durable: a question
is a row of the store and a decision a step, so a resumed task finds them again instead of
asking twice. The waiters are woken through `HumanSignals` (the runner's `wake`), and look at
the store again every HUMAN_RECHECK_S should a wake-up be lost.

The subtle part is the wait lock: the decisions "the task now waits" and "it works again"
are taken one at a time, so an answer that arrives while the first is being taken is never
lost (see `check_waiting` and `progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import Any, Protocol

from daemon.engine.lifecycle import WAITING, TaskStates
from daemon.engine.notify import Notifier
from daemon.engine.settings import TaskSettings
from daemon.engine.streams import StreamBook, StreamState
from daemon.store.states import TaskState
from daemon.store.store import QuestionRow, Store

__all__ = ["HUMAN_RECHECK_S", "HumanSignals", "HumanWaits", "attention"]

#: Seconds between two looks at the store while waiting for a human, should a wake-up be lost.
HUMAN_RECHECK_S = 30.0


class HumanSignals(Protocol):
    """How a waiting task hears that a human acted (the runner gives one per task)."""

    def human_signal(self, task_id: str) -> asyncio.Event:
        """The event the next wake-up of `task_id` sets.

        A waiter takes it *before* checking the store and waits on it after, so an action that
        lands in between is never missed.
        """
        ...


async def attention(
    store: Store,
    notifier: Notifier | None,
    task_id: str,
    settings: TaskSettings,
    kind: str,
    reason: str,
    **data: Any,
) -> None:
    """A task needs a human: the `attention` event, and the notification hook if set."""
    await store.append_event(task_id, "attention", {"kind": kind, "reason": reason, **data})
    if notifier is not None:
        notifier.notify(settings.notify_command, task_id, reason, settings.key_names())


class HumanWaits:
    """The waits of one task run for its human, and the moves in and out of them."""

    def __init__(
        self,
        store: Store,
        task_id: str,
        settings: TaskSettings,
        states: TaskStates,
        book: StreamBook,
        signals: HumanSignals,
        notifier: Notifier | None,
        *,
        waiting: bool = True,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.settings = settings
        self.states = states
        self.book = book
        self.signals = signals
        self.notifier = notifier
        # Serialises the decisions "the task now waits for a human" and "it works again",
        # so that an answer arriving while the first is being made is never lost.
        self._wait_lock = asyncio.Lock()
        # The task may be in input_required/awaiting_approval (`waiting`: the run began in
        # one; only this run puts it there later); a real model call then first moves it
        # back to work.
        self._maybe_waiting = waiting

    async def attention(self, kind: str, reason: str, **data: Any) -> None:
        await attention(
            self.store, self.notifier, self.task_id, self.settings, kind, reason, **data
        )

    async def progress(self) -> None:
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
                await self.states.move(self.states.phase, reason="work resumed", leave_wait=True)
            self._maybe_waiting = False

    # --- questions ---------------------------------------------------------------------------

    async def ask(self, st: StreamState, question: str, key: str) -> str:
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
        await self.book.update(st, "waiting")
        await self.check_waiting()
        while True:
            signal = self.signals.human_signal(self.task_id)
            answer = await answered()
            if answer is not None:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUMAN_RECHECK_S):
                    await signal.wait()
        # From here the stream works again; its next model call moves the task out of
        # input_required if the answer did not already (see progress).
        st.status, st.question = "working", None
        await self.book.update(st, "running")
        return answer

    async def check_waiting(self) -> None:
        """Move to input_required only when no stream can progress without an answer.

        Called whenever a stream starts to wait or ends. Streams still working (or queued for
        a governor slot), and streams whose dependencies are all done, can progress; a stream
        that split is represented by its sub-streams; a stream behind a waiting one cannot.
        """
        streams = self.book.streams
        async with self._wait_lock:
            if not any(s.status == "waiting" for s in streams.values()):
                return
            open_q = [q for q in await self.store.questions_of(self.task_id) if q.answer is None]
            open_ids = {q.id for q in open_q}
            # No await from this scan to the move below: it is one consistent picture.
            for s in streams.values():
                if s.status == "working":
                    return
                if s.status == "waiting" and s.question not in open_ids:
                    return  # answered: it is about to resume
                if s.status == "pending" and all(
                    streams[d].status == "done" for d in s.spec.depends_on if d in streams
                ):
                    return
            # Set before the move: a stream that resumes from here on takes the lock in
            # progress and moves the task back to work after this move, never before it.
            self._maybe_waiting = True
            if not await self.states.move(
                TaskState.input_required, reason=f"{len(open_q)} open question(s)"
            ):
                return  # already waiting (a resumed task), or it cannot wait now
            await self.attention(
                "questions",
                f"{len(open_q)} question(s) need an answer: "
                + "; ".join(f"{q.stream_id}: {q.question}" for q in open_q),
                questions=[
                    {"id": q.id, "stream_id": q.stream_id, "question": q.question} for q in open_q
                ],
            )

    # --- the approval decision -----------------------------------------------------------------

    async def await_decision(self, result: str, revision: int) -> dict[str, Any]:
        """Wait for the human's decision on merged result number `revision`.

        Durable: the decision is the step `approval:<revision>`, written by the service
        only while the task is in awaiting_approval and `approval_round` names this
        revision. Both are written here before the task starts to wait, so a decision is
        always taken on the result the human saw, and a resumed task finds it again.
        """
        key = f"approval:{revision}"
        decision = await self.store.get_step(self.task_id, key)
        if decision is not None:
            return dict(decision)
        await self.store.put_step(self.task_id, "approval_round", revision)
        self._maybe_waiting = True
        if await self.states.move(
            TaskState.awaiting_approval,
            reason=f"result ready for approval (revision {revision})",
            result=result,
        ):
            await self.attention(
                "approval",
                "result awaits approval" + (f" (revision {revision})" if revision else ""),
                revision=revision,
            )
        while True:
            signal = self.signals.human_signal(self.task_id)
            decision = await self.store.get_step(self.task_id, key)
            if decision is not None:
                return dict(decision)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUMAN_RECHECK_S):
                    await signal.wait()
