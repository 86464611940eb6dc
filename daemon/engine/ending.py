"""How a task ends when it does not complete: failed or canceled, with a partial report.

Whatever stage a task was in, what was done is kept: the report of a failed or canceled task
shows the plan, the streams that finished and the usage so far. Streams that were running,
waiting or not started yet are marked canceled when the task is. The time the task and its
streams waited for the human is read from its questions and its state changes (`human_waits`)
and reported apart from the work.

Ending races with everything else that moves a task: a second cancel, a failure, the task
completing on its own. The first to reach the store wins and a task that reached a final
state stays as it is: a later ending is a no-op that says so (it returns False), never an
`IllegalTransition` for its caller to trip over.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from daemon.engine.human import attention
from daemon.engine.lifecycle import WAITING
from daemon.engine.notify import Notifier
from daemon.engine.settings import TaskSettings
from daemon.engine.streams import STREAM_FINAL
from daemon.engine.usage import records_of
from daemon.store.states import TERMINAL, IllegalTransition, TaskState
from daemon.store.store import Store, TaskRow
from roles.models.costs import premium_cost
from roles.plan.schema import Plan
from roles.report import Spans, StreamFacts, build_report

__all__ = ["fail_task", "finalize", "partial_report"]

log = logging.getLogger("tierd.tasks")


async def human_waits(store: Store, task_id: str, now: float) -> tuple[dict[str, Spans], Spans]:
    """The spans the task waited for the human: per stream, from each of its questions to
    its answer (or `now`); and the task's own, from each move into input_required or
    awaiting_approval to the move out of it (or `now`), as its state events say."""
    per_stream: dict[str, Spans] = {}
    for q in await store.questions_of(task_id):
        if q.stream_id is not None:
            end = q.answered_at if q.answered_at is not None else now
            per_stream.setdefault(q.stream_id, []).append((q.created_at, end))
    spans: Spans = []
    since: float | None = None
    last = 0
    while batch := await store.events_after(last, task_id, type_="task.state"):
        for ev in batch:
            last = ev["id"]
            waiting = ev["data"].get("state") in {str(s) for s in WAITING}
            if waiting and since is None:
                since = float(ev["created_at"])
            elif not waiting and since is not None:
                spans.append((since, float(ev["created_at"])))
                since = None
    if since is not None:
        spans.append((since, now))
    return per_stream, spans


async def partial_report(
    store: Store, row: TaskRow, state: str, error: str | None
) -> dict[str, Any]:
    """The task's report as of now (complete for a completed task)."""
    settings = TaskSettings.from_json(row.settings_json)
    plan = Plan.model_validate_json(row.plan_json) if row.plan_json else None
    streams = await store.streams_of(row.id)
    ended_at = time.time()
    waits, human = await human_waits(store, row.id, ended_at)
    return build_report(
        state=state,
        plan=plan,
        streams=[
            StreamFacts(
                id=s.stream_id,
                title=s.title,
                state=s.state,
                output=s.output,
                verdict=s.verdict,
                reason=s.reason,
                rounds=s.rounds,
                started_at=s.started_at,
                ended_at=s.ended_at,
                parent=s.parent_id,
            )
            for s in streams
        ],
        usage=await records_of(store, row.id),
        premium_model=settings.premium_model,
        premium_cost=premium_cost,
        started_at=row.created_at,
        ended_at=ended_at,
        settings=dict(settings.stored),
        error=error,
        waits=waits,
        human=human,
    )


async def _cancel_streams(store: Store, task_id: str) -> None:
    """Streams that were running, waiting or not started yet will never finish."""
    now = time.time()
    for s in await store.streams_of(task_id):
        if s.state not in STREAM_FINAL:
            await store.upsert_stream(
                task_id,
                s.stream_id,
                event=(
                    "stream.state",
                    {"stream_id": s.stream_id, "state": "canceled", "parent": s.parent_id},
                ),
                state="canceled",
                ended_at=now if s.started_at else None,
            )


async def finalize(store: Store, task_id: str, state: TaskState, reason: str) -> bool:
    """End a task as failed or canceled, keeping what was done in a partial report.

    True if this call ended it; False if it had ended already (or ends meanwhile: a racing
    cancel, or the task completing on its own), in which case it is left as it is.
    """
    row = await store.get_task(task_id)
    if row is None or TaskState(row.state) in TERMINAL:
        return False
    if state == TaskState.canceled:
        await _cancel_streams(store, task_id)
    report = await partial_report(store, row, state, reason)
    return await _end(
        store,
        task_id,
        state,
        reason,
        report_json=json.dumps(report),
        error=reason if state == TaskState.failed else None,
    )


async def _end(store: Store, task_id: str, state: TaskState, reason: str, **fields: Any) -> bool:
    """The move to a final state, unless another one got there first (then False)."""
    try:
        await store.transition(task_id, state, reason=reason, **fields)
    except IllegalTransition as exc:
        # The store checks the move in the same transaction that would make it: the task
        # reached exc.current between our read and this write. It keeps that state.
        log.info("task %s: already %s, not marked %s", task_id, exc.current, state)
        return False
    log.info("task %s: %s (%s)", task_id, state, reason)
    return True


async def fail_task(
    store: Store, task_id: str, reason: str, notifier: Notifier | None = None
) -> bool:
    """Mark a task failed with a partial report, whatever stage it was in, and say so.

    True if this call failed it; False if it had ended already (it is left as it is).
    """
    row = await store.get_task(task_id)
    if row is None or TaskState(row.state) in TERMINAL:
        return False
    report = await partial_report(store, row, TaskState.failed, reason)
    if not await _end(
        store, task_id, TaskState.failed, reason, error=reason, report_json=json.dumps(report)
    ):
        return False
    settings = TaskSettings.from_json(row.settings_json)
    await attention(store, notifier, task_id, settings, "failed", f"task failed: {reason}")
    return True
