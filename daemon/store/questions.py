"""The store's human input: questions a task asks and their answers, and the decision on a
result that waits for approval. Each answer or decision and the state change it causes are
written in one transaction, so a task never looks as if it still waited for what it got.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlmodel import col, select

from daemon.store.events import NewEvent, as_new_or_none, move_task
from daemon.store.states import TERMINAL
from daemon.store.tables import QuestionRow, StepRow, TaskRow
from daemon.store.thread import StoreThread


class HumanInput(StoreThread):
    """Reads and writes of the `questions` table, and the approval steps of the step memo."""

    async def add_question(self, row: QuestionRow) -> None:
        def work() -> None:
            with self._session() as s:
                s.merge(row)
                s.commit()

        await self._run(work)

    async def questions_of(self, task_id: str) -> list[QuestionRow]:
        def work() -> list[QuestionRow]:
            with self._session() as s:
                q = select(QuestionRow).where(QuestionRow.task_id == task_id)
                return list(s.exec(q.order_by(col(QuestionRow.created_at))))

        return await self._run(work)

    async def answer_questions(
        self, task_id: str, answers: dict[str, str], *, resume: str | None = None
    ) -> list[str]:
        """Store answers; return the ids that were open and are now answered.

        A task that has ended takes no answers. With `resume`, a task in input_required
        that got at least one answer moves to that state in the same transaction (with its
        event): an answer always unblocks the stream that asked, so a client that reads the
        task right after answering never sees the stale wait.
        """

        def work() -> tuple[list[str], NewEvent | None]:
            done = []
            ev = None
            with self._session() as s:
                task = s.get(TaskRow, task_id, with_for_update=True)
                if task is None or task.state in TERMINAL:
                    return [], None
                for qid, answer in answers.items():
                    row = s.get(QuestionRow, qid)
                    if row is None or row.task_id != task_id or row.answer is not None:
                        continue
                    row.answer = answer
                    row.answered_at = time.time()
                    s.add(row)
                    done.append(qid)
                if done and resume and task.state == "input_required":
                    ev = move_task(s, task, resume, f"{len(done)} answer(s) received")
                s.commit()
                return done, as_new_or_none(ev)

        done, _ev = await self._write(work, lambda r: [r[1]])
        return done

    async def decide(
        self, task_id: str, value: dict[str, Any], *, waiting: str, reject_to: str | None = None
    ) -> tuple[str, int | None, bool]:
        """Record a human decision on the result the task waits with, atomically.

        The decision is taken only while the task is in `waiting` (awaiting_approval) and
        only once per wait: it is stored as step `approval:<round>`, where the step
        `approval_round` (written by the workflow before it starts to wait) says which
        round the task waits on. A rejection moves the task to `reject_to` in the same
        transaction, so the task never looks as if it still waited for the decision it got.
        Returns (state, round, recorded); recorded is False when the state is wrong or the
        round already has a decision.
        """

        def work() -> tuple[str, int | None, bool, NewEvent | None]:
            with self._session() as s:
                task = s.get(TaskRow, task_id, with_for_update=True)
                if task is None:
                    raise KeyError(task_id)
                if task.state != waiting:
                    return task.state, None, False, None
                step = s.get(StepRow, (task_id, "approval_round"))
                round_ = int(json.loads(step.value_json)) if step else 0
                key = f"approval:{round_}"
                if s.get(StepRow, (task_id, key)) is not None:
                    return task.state, round_, False, None
                s.add(
                    StepRow(
                        task_id=task_id,
                        key=key,
                        value_json=json.dumps(value),
                        created_at=time.time(),
                    )
                )
                ev = None
                if reject_to and value.get("decision") == "reject":
                    ev = move_task(s, task, reject_to, "result rejected: revising it")
                s.commit()
                return task.state, round_, True, as_new_or_none(ev)

        state, round_, recorded, _ev = await self._write(work, lambda r: [r[3]])
        return state, round_, recorded
