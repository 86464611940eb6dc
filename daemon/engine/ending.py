"""How a task ends when it does not complete: failed or canceled, with a partial report.

Whatever stage a task was in, what was done is kept: the report of a failed or canceled task
shows the plan, the streams that finished and the usage so far. Streams that were running,
waiting or not started yet are marked canceled when the task is.
"""

from __future__ import annotations

import json
import time
from typing import Any

from daemon.engine.human import attention
from daemon.engine.notify import Notifier
from daemon.engine.settings import TaskSettings
from daemon.engine.streams import STREAM_FINAL
from daemon.engine.usage import records_of
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import Store, TaskRow
from roles.models.costs import premium_cost
from roles.plan.schema import Plan
from roles.report import StreamFacts, build_report

__all__ = ["fail_task", "finalize", "partial_report"]


async def partial_report(
    store: Store, row: TaskRow, state: str, error: str | None
) -> dict[str, Any]:
    """The task's report as of now (complete for a completed task)."""
    settings = TaskSettings.from_json(row.settings_json)
    plan = Plan.model_validate_json(row.plan_json) if row.plan_json else None
    streams = await store.streams_of(row.id)
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
        ended_at=time.time(),
        settings=dict(settings.stored),
        error=error,
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


async def finalize(store: Store, task_id: str, state: TaskState, reason: str) -> None:
    """End a task as failed or canceled, keeping what was done in a partial report."""
    row = await store.get_task(task_id)
    if row is None or TaskState(row.state) in TERMINAL:
        return
    if state == TaskState.canceled:
        await _cancel_streams(store, task_id)
    report = await partial_report(store, row, state, reason)
    await store.transition(
        task_id,
        state,
        reason=reason,
        report_json=json.dumps(report),
        error=reason if state == TaskState.failed else None,
    )


async def fail_task(
    store: Store, task_id: str, reason: str, notifier: Notifier | None = None
) -> None:
    """Mark a task failed with a partial report, whatever stage it was in, and say so."""
    row = await store.get_task(task_id)
    if row is None or TaskState(row.state) in TERMINAL:
        return
    report = await partial_report(store, row, TaskState.failed, reason)
    await store.transition(
        task_id, TaskState.failed, reason=reason, error=reason, report_json=json.dumps(report)
    )
    settings = TaskSettings.from_json(row.settings_json)
    await attention(store, notifier, task_id, settings, "failed", f"task failed: {reason}")
