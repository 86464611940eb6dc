"""The bounded wait and what a waiting model reads: where a task stands and what to do next.

A tierd task runs for minutes, and MCP clients give up on a tool call that holds the
connection much longer than tens of seconds. So no tool holds a call past `mcp.tool_wait_s`:
`wait_task` returns when the task settles (ends, or needs the human) or when the bound is
reached, whichever comes first, with the progress so far. The wait is woken by the store's
event feed, so it reads the task again only when one of its events commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel, Field

from daemon.service.params import TaskIdParams
from daemon.service.results import QuestionView, TaskDetail
from daemon.service.service import Service
from daemon.store.feed import EventFeed
from daemon.store.states import TERMINAL, TaskState

#: States in which the task waits for the human: a wait ends on them.
HUMAN_STATES = frozenset({TaskState.input_required, TaskState.awaiting_approval})
#: Seconds between re-reads when the feed is quiet (a safety net; events wake the wait).
QUIET_RECHECK_S = 5.0

NEXT_STEP = {
    TaskState.input_required: (
        "the task needs answers: call answer_questions with {question id: answer} for the "
        "open_questions (ask the user if you do not know), then wait_task again"
    ),
    TaskState.awaiting_approval: (
        "the merged result awaits approval: show it to the user, then call approve_result "
        "with decision approve, or reject with a comment saying what to change"
    ),
    TaskState.completed: "done: the merged result is in `result`",
    TaskState.failed: "the task failed: `error` says why; submit again after fixing that",
    TaskState.canceled: "the task was canceled",
}
RUNNING_STEP = "still working: call wait_task again to keep following it"


@dataclass
class Deadline:
    """The one bound on a tool call: every wait inside the call takes what is left of it.

    A little of the bound (a tenth, at most a second) is kept back from the waits for the
    reads that make the call's answer once they end.
    """

    bound_s: float
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds a wait inside the call may still take."""
        reserve = min(1.0, self.bound_s / 10)
        return max(0.0, self.bound_s - reserve - self.elapsed())


class StreamProgress(BaseModel):
    id: str
    title: str
    state: str


class Progress(BaseModel):
    """Where a task stands: enough for a model to decide whether to wait, answer or approve."""

    task_id: str
    state: TaskState
    settled: bool = Field(description="true: the task ended or waits for the human")
    next_step: str = Field(description="what to do now")
    streams: list[StreamProgress] = Field(description="the plan's streams and their states")
    stream_states: dict[str, int] = Field(description="how many streams are in each state")
    open_questions: list[QuestionView] = Field(description="questions waiting for an answer")
    result: str | None = Field(description="the merged result, once there is one")
    error: str | None
    cost_usd: float | None = Field(description="dollars spent, once the task's report exists")
    waited_s: float = Field(description="seconds this call waited")
    human_reply: str | None = Field(
        default=None,
        description="when this call asked the user (elicitation): what came of it",
    )


def progress_of(task: TaskDetail, waited_s: float = 0.0) -> Progress:
    state = TaskState(task.state)
    cost = (task.report or {}).get("cost") or {}
    settled = state in TERMINAL or state in HUMAN_STATES
    return Progress(
        task_id=task.id,
        state=state,
        settled=settled,
        next_step=NEXT_STEP.get(state, RUNNING_STEP),
        streams=[StreamProgress(id=s.id, title=s.title, state=s.state) for s in task.streams],
        stream_states=dict(Counter(s.state for s in task.streams)),
        open_questions=[q for q in task.questions if q.answer is None],
        result=task.result,
        error=task.error,
        cost_usd=cost.get("total_usd") if isinstance(cost, dict) else None,
        waited_s=round(waited_s, 3),
    )


#: Called with each new snapshot while waiting (progress notifications).
OnChange = Callable[[Progress], Awaitable[None]]


def is_settled(progress: Progress) -> bool:
    return progress.settled


def left_approval(progress: Progress) -> bool:
    """An approval or rejection is acted on a moment after it is recorded: until then the
    task still reads awaiting_approval."""
    return progress.state != TaskState.awaiting_approval


async def wait_until_settled(
    service: Service,
    feed: EventFeed,
    task_id: str,
    bound_s: float,
    on_change: OnChange | None = None,
    until: Callable[[Progress], bool] = is_settled,
) -> Progress:
    """The task's progress once `until` holds (by default: it settles), or after `bound_s`
    seconds, whichever is first.

    TaskNotFound (a ServiceError) for an unknown id, at once.
    """
    started = time.monotonic()
    after = feed.latest  # taken before the read: an event committed meanwhile still wakes us
    snapshot = progress_of(await service.get(TaskIdParams(task_id=task_id)))
    if until(snapshot) or bound_s <= 0:
        return snapshot
    # Followed by its full id: the caller may have named it by a prefix or an alias.
    task_id = snapshot.task_id
    # Closed explicitly: the feed counts its followers until the generator ends.
    events = cast(
        "AsyncGenerator[dict[str, Any] | None, None]",
        feed.follow(after, task_id, heartbeat_s=QUIET_RECHECK_S),
    )
    try:
        with contextlib.suppress(TimeoutError):
            # The bound counts from the call's start: the first read took some of it.
            async with asyncio.timeout(max(0.0, bound_s - (time.monotonic() - started))):
                async for _event in events:
                    latest = progress_of(await service.get(TaskIdParams(task_id=task_id)))
                    if _changed(snapshot, latest) and on_change is not None:
                        await on_change(latest)
                    snapshot = latest
                    if until(snapshot):
                        break
    finally:
        await events.aclose()
    return snapshot.model_copy(update={"waited_s": round(time.monotonic() - started, 3)})


def _changed(before: Progress, after: Progress) -> bool:
    keys: tuple[str, ...] = ("state", "stream_states", "open_questions")
    return any(getattr(before, k) != getattr(after, k) for k in keys)


def fraction_done(progress: Progress) -> tuple[float, float | None]:
    """(streams finished, streams planned) for a progress notification."""
    done = sum(n for s, n in progress.stream_states.items() if s in _DONE_STREAM_STATES)
    total = float(len(progress.streams)) or None
    return float(done), total


#: A stream's final states (the engine's STREAM_FINAL; the API reads, never imports, it).
_DONE_STREAM_STATES = frozenset({"accepted", "fixed", "failed", "canceled"})


def describe(progress: Progress) -> str:
    """One line for a progress notification."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(progress.stream_states.items()))
    return f"{progress.state}" + (f" ({counts})" if counts else "")
