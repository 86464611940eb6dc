"""The outputs reviewed together: the orchestrator looks for contradictions between streams.

A conflict names the streams to send back, with feedback; they are redone (executed and
reviewed again, once each) and the outputs checked again, at most review.max_rounds times.
A redo uses its own memo keys (review rounds 100 and up), distinct from the stream's own
rounds, so a resumed task replays it like any other call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from daemon.engine.context import TaskContext
from daemon.engine.disk_full import store_full
from daemon.engine.lifecycle import TaskStates
from daemon.engine.stream_work import StreamWork
from daemon.engine.streams import StreamBook, StreamState
from daemon.store.states import TaskState
from roles import orchestrator
from roles.plan.schema import Plan

__all__ = ["CONFLICT_ROUND", "ConflictCheck"]

#: The review round of a conflict redo is this plus the check number.
CONFLICT_ROUND = 100


class ConflictCheck:
    """Checks the top-level outputs against each other and redoes the streams in conflict."""

    def __init__(
        self, ctx: TaskContext, states: TaskStates, book: StreamBook, work: StreamWork
    ) -> None:
        self.ctx = ctx
        self.states = states
        self.book = book
        self.work = work

    async def review(self, plan: Plan, outputs: dict[str, str]) -> dict[str, str]:
        """The top-level outputs after the conflict check and any redos it asked for."""
        max_rounds = self.ctx.settings.max_rounds
        top = {s.id: outputs[s.id] for s in plan.streams}
        await self.states.enter(TaskState.reviewing)
        for check in range(max_rounds + 1):
            report = await orchestrator.check_conflicts(
                self.ctx.call,
                self.ctx.row.goal,
                plan,
                top,
                self.ctx.rules,
                round=check,
                context=self.ctx.row.context,
                brief=self.work.brief,
            )
            await self.ctx.store.append_event(
                self.ctx.task_id,
                "review.conflicts",
                {"round": check, "conflicts": [c.model_dump() for c in report.conflicts]},
            )
            redo = sorted({sid for c in report.conflicts for sid in c.redo if sid in top})
            if not redo or check == max_rounds:
                break
            await self.states.enter(TaskState.running, reason=f"conflict: redo {', '.join(redo)}")
            feedback = {
                sid: "; ".join(
                    c.feedback or c.description for c in report.conflicts if sid in c.redo
                )
                for sid in redo
            }
            redone = await self._all_or_none(
                [self._redo(self.book[sid], feedback[sid], check) for sid in redo]
            )
            top.update(dict(zip(redo, redone, strict=True)))
            await self.states.enter(TaskState.reviewing)
        return top

    async def _all_or_none(self, redos: list[Coroutine[Any, Any, str]]) -> list[str]:
        """Every redo's output; when one fails, the others are stopped before the error goes
        on (left running, they would call models for a run that has ended). On a full disk,
        the model calls in flight come back first: their answers are held, not lost."""
        tasks = [asyncio.ensure_future(r) for r in redos]
        try:
            return list(await asyncio.gather(*tasks))
        except Exception as exc:
            if store_full(exc) is not None:
                await self.ctx.settled()
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _redo(self, st: StreamState, feedback: str, check: int) -> str:
        key = f"conflict-redo:{st.spec.id}:{check}"
        done = await self.ctx.store.get_step(self.ctx.task_id, key)
        if done is not None:
            return str(done["output"])
        deps = {d: await self.book[d].future for d in st.spec.depends_on}
        st.status = "working"
        try:
            await self.book.update(st, "running", verdict="redo", reason=feedback[:2000])
            round_ = CONFLICT_ROUND + check  # distinct memo keys from the stream's own rounds
            reply, _ = await self.work.execute_answered(
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
                self.ctx.call,
                st.spec,
                output,
                self.ctx.rules,
                round=round_,
                brief=self.work.brief,
                inputs=deps,
            )
            if verdict.verdict == "fix":
                output = await orchestrator.fix(
                    self.ctx.call,
                    st.spec,
                    output,
                    verdict,
                    self.ctx.rules,
                    round=round_,
                    brief=self.work.brief,
                )
            saved = await self.book.saved()
            rounds = (saved[st.spec.id].rounds if st.spec.id in saved else 1) + 1
            await self.book.update(
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
