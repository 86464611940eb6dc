"""The plan's DAG, run durably: every stream starts the moment its own dependencies are done.

No waves, no barriers: each stream is an asyncio task that first awaits its dependencies'
futures, then works (`StreamWork`). A failed stream fails its dependants (they report which
dependency failed) and, once every stream has ended, the task. A stream may split into
sub-streams (layered parallelism, depth-limited): the split is validated like a plan and its
sub-streams run as a DAG of their own, inside the parent stream.

A full disk is not a stream's failure: the stream that hit it stops the whole DAG (every
stream is cancelled, none is marked failed) and the error goes up to the runner, which runs
the task again once there is room; finished streams replay from the memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from daemon.engine.context import TaskContext
from daemon.engine.disk_full import store_full
from daemon.engine.errors import StreamFailed, TaskFailed
from daemon.engine.human import HumanWaits
from daemon.engine.lifecycle import TaskStates
from daemon.engine.stream_work import StreamWork
from daemon.engine.streams import StreamBook, StreamState
from daemon.store.states import TaskState
from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import topological_order, validate_plan

__all__ = ["Scheduler"]

log = logging.getLogger("tierd.tasks")


class Scheduler:
    """Runs a plan's streams (and the sub-streams of splits) as they become ready."""

    def __init__(
        self,
        ctx: TaskContext,
        states: TaskStates,
        book: StreamBook,
        work: StreamWork,
        human: HumanWaits,
    ) -> None:
        self.ctx = ctx
        self.states = states
        self.book = book
        self.work = work
        self.human = human

    async def execute(self, plan: Plan) -> dict[str, str]:
        """Every top-level stream's accepted output, by stream id."""
        await self.states.move(TaskState.running)
        await self.book.register(plan.streams, 0, None)
        return await self.run_dag(plan.streams)

    async def run_dag(self, specs: list[StreamSpec]) -> dict[str, str]:
        order = topological_order(Plan(streams=specs))
        runners = {sid: asyncio.create_task(self._run_stream(self.book[sid])) for sid in order}
        try:
            await self._until_done_or_disk_full(list(runners.values()))
        except BaseException:
            for t in runners.values():
                t.cancel()
            await asyncio.gather(*runners.values(), return_exceptions=True)
            raise
        failed = [sid for sid, t in runners.items() if t.exception() is not None]
        if failed:
            reasons = "; ".join(f"{sid}: {runners[sid].exception()}" for sid in failed)
            raise TaskFailed(f"{len(failed)} stream(s) failed: {reasons}")
        return {sid: runners[sid].result() for sid in order}

    async def _until_done_or_disk_full(self, runners: list[asyncio.Task[str]]) -> None:
        """Wait until every stream has ended; if one met a full disk, raise that once the
        model calls in flight have come back (their answers are held, not lost: see
        `gateway.HeldAnswers`); the caller then stops the other streams."""
        pending = set(runners)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                error = None if t.cancelled() else t.exception()
                if error is not None and store_full(error) is not None:
                    await self.ctx.settled()
                    raise error

    async def _run_stream(self, st: StreamState) -> str:
        try:
            deps: dict[str, str] = dict(st.inherited)
            for dep in st.spec.depends_on:
                try:
                    deps[dep] = await self.book[dep].future
                except Exception as exc:
                    raise StreamFailed(f"dependency {dep!r} failed") from exc
            output = await self.work.work(st, deps, self.split)
            st.status = "done"
            st.future.set_result(output)
            await self.human.check_waiting()
            return output
        except asyncio.CancelledError:
            st.future.cancel()
            raise
        except Exception as exc:
            if store_full(exc) is not None:
                raise  # not the stream's failure: the whole DAG stops (see run_dag)
            st.status = "failed"
            log.warning("task %s: stream %s failed: %s", self.ctx.task_id, st.spec.id, exc)
            st.future.set_exception(StreamFailed(str(exc)))
            st.future.exception()  # mark retrieved: dependants report it themselves
            with contextlib.suppress(Exception):
                await self.book.update(st, "failed", reason=str(exc)[:2000], ended_at=time.time())
            await self.human.check_waiting()
            raise

    async def split(
        self, st: StreamState, subs: list[StreamSpec], deps: dict[str, str]
    ) -> str | None:
        """Run a stream's proposed sub-streams; their joined output, or None if the split is
        not a valid plan (the stream is then done whole)."""
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
        # The task's rules, but a split may always run in parallel and has no tests-first rule.
        rules = replace(self.ctx.plan_rules, parallelize="when-possible", require_tests_first=False)
        problems = validate_plan(Plan(streams=renamed), rules)
        await self.ctx.store.append_event(
            self.ctx.task_id,
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
        await self.book.register(renamed, st.depth + 1, prefix)
        for sub in renamed:
            self.book[sub.id].inherited = deps
        outputs = await self.run_dag(renamed)
        return "\n\n".join(f"## {s.title}\n\n{outputs[s.id]}" for s in renamed)
