"""Reading tasks: a task found by id, one task in full, and pages of tasks.

The views are built from the store's rows here, in the service, so the store's tables can
change without changing what clients read. A code task's facts (its repository, and what each
stream did in its worktree) come from the rows' `code_json`, written at submit and by the
engine.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from daemon.service.errors import TaskNotFound
from daemon.service.params import ListParams, TaskIdParams
from daemon.service.results import (
    QuestionView,
    StreamCode,
    StreamView,
    TaskCode,
    TaskDetail,
    TaskPage,
    TaskSummary,
)
from daemon.store.states import TaskState
from daemon.store.store import QuestionRow, Store, StreamRow, TaskRow

log = logging.getLogger("tierd.service")
M = TypeVar("M", bound=BaseModel)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _code(model: type[M], text: str | None, where: str) -> M | None:
    """Stored code facts as `model`; None for a text task or stream. Facts that do not fit the
    model are a bug of the writer's: logged, and left out rather than failing every read."""
    data = _loads(text)
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        log.error("code facts of %s do not fit %s: %s", where, model.__name__, exc)
        return None


def _repo(row: TaskRow) -> str | None:
    data = _loads(row.code_json)
    repo = data.get("repo") if isinstance(data, dict) else None
    return repo if isinstance(repo, str) else None


async def find_task(store: Store, task_id: str) -> TaskRow:
    """The task with this id, or TaskNotFound."""
    row = await store.get_task(task_id)
    if row is None:
        raise TaskNotFound(f"no task with id {task_id!r}", {"task_id": task_id})
    return row


def _summary_fields(row: TaskRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": TaskState(row.state),
        "goal": row.goal,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "error": row.error,
        "repo": _repo(row),
    }


def summary(row: TaskRow) -> TaskSummary:
    return TaskSummary(**_summary_fields(row))


def stream_view(s: StreamRow) -> StreamView:
    return StreamView(
        id=s.stream_id,
        parent=s.parent_id,
        title=s.title,
        state=s.state,
        depends_on=(_loads(s.spec_json) or {}).get("depends_on", []),
        output=s.output,
        verdict=s.verdict,
        reason=s.reason,
        rounds=s.rounds,
        depth=s.depth,
        started_at=s.started_at,
        ended_at=s.ended_at,
        code=_code(StreamCode, s.code_json, f"stream {s.task_id}/{s.stream_id}"),
    )


def question_view(q: QuestionRow) -> QuestionView:
    return QuestionView(id=q.id, stream_id=q.stream_id, question=q.question, answer=q.answer)


class TaskViews:
    """`task/get` and `task/list`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def detail(self, row: TaskRow) -> TaskDetail:
        streams = await self._store.streams_of(row.id)
        questions = await self._store.questions_of(row.id)
        return TaskDetail(
            **_summary_fields(row),
            context=row.context,
            options=_loads(row.options_json) or {},
            plan=_loads(row.plan_json),
            streams=[stream_view(s) for s in streams],
            questions=[question_view(q) for q in questions],
            result=row.result,
            report=_loads(row.report_json),
            code=_code(TaskCode, row.code_json, f"task {row.id}"),
        )

    async def get(self, params: TaskIdParams) -> TaskDetail:
        return await self.detail(await find_task(self._store, params.task_id))

    async def list(self, params: ListParams) -> TaskPage:
        rows = await self._store.list_tasks(params.state, params.limit + 1, params.cursor)
        page = rows[: params.limit]
        return TaskPage(
            tasks=[summary(r) for r in page],
            next_cursor=page[-1].id if len(rows) > params.limit else None,
        )
