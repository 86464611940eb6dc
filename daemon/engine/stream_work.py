"""One stream's work: the executor, then the orchestrator's review, round after round.

Verdicts: accept; fix (the orchestrator corrects a small defect itself); redo with feedback
(at most review.max_rounds times); escalate to the human, whose answer goes back to the
executor with the feedback. The executor may ask the human a question (its answer comes
back in the next attempt) or propose a split of its own stream, which the scheduler runs;
an invalid split is done whole instead. Every call has its memo key, so a resumed stream
replays its finished rounds without calling a model.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.engine.code.stream_runner import CodeStreams
from daemon.engine.context import TaskContext
from daemon.engine.human import HumanWaits
from daemon.engine.streams import StreamBook, StreamState
from roles import orchestrator
from roles.executor import execute
from roles.plan.schema import ExecutorReply, Review, StreamSpec
from roles.prompts import TaskBrief

__all__ = ["Splitter", "StreamWork"]

#: Runs a stream's proposed sub-streams; returns their joined output, None if the split is
#: refused (the scheduler's `split`).
Splitter = Callable[[StreamState, list[StreamSpec], dict[str, str]], Awaitable[str | None]]


class StreamWork:
    """Executes and reviews streams until each has an accepted output."""

    def __init__(
        self,
        ctx: TaskContext,
        book: StreamBook,
        human: HumanWaits,
        code: CodeStreams | None = None,
    ) -> None:
        self.ctx = ctx
        self.book = book
        self.human = human
        #: The code side of a task with a repository: its streams work in worktrees.
        self.code = code
        #: The task's material with its plan, set once the plan exists: every premium
        #: prompt starts with it (the same bytes: a provider's prompt cache serves it).
        self.brief: TaskBrief | None = None

    async def work(self, st: StreamState, deps: dict[str, str], split: Splitter) -> str:
        """The stream's accepted output (read back from the memo if it was accepted before)."""
        spec = st.spec
        done = await self.ctx.saved(f"stream:{spec.id}")
        if done is not None:
            return str(done["output"])
        st.status = "working"
        st.started_at = st.started_at or time.time()
        await self.book.update(st, "running", started_at=st.started_at)
        round_, attempt = 0, 0
        feedback: str | None = None
        answers: dict[str, str] = {}
        unsaid: tuple[str, dict[str, Any]] | None = None  # an acceptance's verdict event
        # A code stream owns paths in a worktree of its own: it does not split.
        may_split = st.depth < self.ctx.settings.split_depth_left and self.code is None
        while True:
            reply, attempt = await self.execute_answered(
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
                    output = await split(st, reply.streams, deps)
                finally:
                    st.status = "working"
                if output is None:  # an invalid split: do the stream whole instead
                    may_split = False
                    attempt += 1
                    continue
                verdict_name, reason = "accept", "all sub-streams accepted"
                break
            verdict, output, unsaid = await self._judge(st, reply.output or "", round_, deps)
            verdict = self._on_evidence(st, verdict)
            if verdict.verdict in ("accept", "fix"):
                verdict_name, reason = verdict.verdict, verdict.reason
                break
            feedback = await self._send_back(st, verdict, round_)
            round_ += 1
            attempt = 0
        if self.code is not None:
            await self.code.accepted(st)
            output = await self.code.outcome(st)
        await self.book.update(
            st,
            "accepted" if verdict_name == "accept" else "fixed",
            step=(f"stream:{spec.id}", {"output": output}),
            first=unsaid,
            output=output,
            verdict=verdict_name,
            reason=reason,
            rounds=round_ + 1,
            ended_at=time.time(),
        )
        return output

    def _on_evidence(self, st: StreamState, verdict: Review) -> Review:
        """A code stream whose tests tierd saw fail is sent back, whatever the verdict
        (`review.require_passing_tests`)."""
        if self.code is None or verdict.verdict not in ("accept", "fix"):
            return verdict
        why = self.code.tests_fail(st) if self.ctx.settings.require_passing_tests else None
        if why is None:
            return verdict
        return Review(verdict="redo", reason="the tests fail", feedback=why)

    async def _judge(
        self, st: StreamState, output: str, round_: int, deps: dict[str, str]
    ) -> tuple[Review, str, tuple[str, dict[str, Any]] | None]:
        """The orchestrator's verdict on `output`, the output after a fix if it fixed it, and
        the verdict's event if it is left to the stream's next write.

        A text stream's acceptance is written next, with nothing awaited before it: its
        `review.verdict` event goes in that transaction (one write per stream, not two).
        Any other verdict is announced now (a fix or a redo takes a model call first)."""
        spec = st.spec
        await self.book.update(st, "reviewing", rounds=round_ + 1)
        verdict = await orchestrator.review(
            self.ctx.call,
            spec,
            output,
            self.ctx.rules,
            round=round_,
            # A code stream's fix is the orchestrator's own tool loop (`CodeStreams.fix`).
            can_fix=True if self.code is not None else None,
            project=self.code.project if self.code is not None else None,
            brief=self.brief,
            inputs=deps,
        )
        said = (
            "review.verdict",
            {
                "stream_id": spec.id,
                "verdict": verdict.verdict,
                "reason": verdict.reason,
                "round": round_,
            },
        )
        if verdict.verdict == "accept" and self.code is None:
            return verdict, output, said
        await self.ctx.store.append_event(self.ctx.task_id, *said)
        if verdict.verdict == "fix" and self.code is not None:
            # A code stream's result is its branch: the orchestrator fixes it with the tools
            # in the stream's worktree, and tierd's own test run decides again (a fix whose
            # tests fail comes back as a redo with their output).
            return await self.code.fix(st, verdict, output, round_), output, None
        if verdict.verdict == "fix":
            output = await orchestrator.fix(
                self.ctx.call, spec, output, verdict, self.ctx.rules, round=round_, brief=self.brief
            )
        return verdict, output, None

    async def _send_back(self, st: StreamState, verdict: Review, round_: int) -> str:
        """The feedback for the next round: the reviewer's for a redo, with the human's answer
        once the redo rounds are used up or the reviewer escalated."""
        spec = st.spec
        if verdict.verdict == "redo" and round_ < self.ctx.settings.max_rounds:
            await self.book.update(
                st, "running", rounds=round_ + 2, verdict="redo", reason=verdict.reason
            )
            return verdict.feedback or verdict.reason
        # Escalate: an explicit escalation, or redo rounds used up.
        question = verdict.question or (
            f"Stream '{spec.id}' ({spec.title}) did not pass review after "
            f"{round_ + 1} round(s): {verdict.reason}. How should it proceed?"
        )
        answer = await self.human.ask(st, question, f"esc:{spec.id}:r{round_}")
        return f"{verdict.feedback or verdict.reason}\nThe human says: {answer}"

    async def execute_answered(
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
        # Only the stream's own attachments: images if the executor's model sees them.
        files = await self.ctx.attachments.for_stream(st, self.book)
        if self.code is not None:
            output = await self.code.execute(
                st,
                deps,
                round_=round_,
                feedback=feedback,
                answers=answers or None,
                attachments=files,
            )
            return ExecutorReply(kind="output", output=output), attempt
        while True:
            reply = await execute(
                self.ctx.call,
                st.spec,
                self.ctx.goal_line,
                deps,
                self.ctx.rules,
                round=round_,
                feedback=feedback,
                answers=answers or None,
                may_split=may_split,
                attempt=attempt,
                attachments=files,
                show_images=self.ctx.attachments.executor_sees_images,
                descriptions=self.ctx.attachments.descriptions,
            )
            if reply.kind != "question" or not reply.question:
                return reply, attempt
            answers[reply.question] = await self.human.ask(
                st, reply.question, f"q:{st.spec.id}:r{round_}:a{attempt}"
            )
            attempt += 1
