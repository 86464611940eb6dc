"""Reading tasks: a task found by id, one task in full, and pages of tasks.

A task is found by its id, by a unique prefix of it (as git finds commits), or by `@last`,
the most recent task; here, in the service, so every client (JSON-RPC, REST, the CLI, the
dashboard, MCP) takes the same short forms, and every action is then done on the full id.

The views are built from the store's rows here, in the service, so the store's tables can
change without changing what clients read. A code task's facts (its repository, and what each
stream did in its worktree) come from the rows' `code_json`, written at submit and by the
engine.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from daemon.service.errors import InvalidParams, TaskNotFound
from daemon.service.params import LAST_TASK, ListParams, TaskIdParams
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


#: The shortest prefix taken (git's own minimum), and the candidates an ambiguous one names.
MIN_PREFIX = 4
CANDIDATES = 10
#: What a prefix of a task id may hold (`submission.new_task_id`: "t" and lowercase hex).
_PREFIX = re.compile(r"t[0-9a-f]*")


async def find_task(store: Store, task_id: str) -> TaskRow:
    """The task with this id, with the only id that starts with it, or the most recent one
    for `@last`; TaskNotFound, or InvalidParams for a prefix more than one id starts with."""
    row = await store.get_task(task_id)
    if row is not None:
        return row
    if task_id == LAST_TASK:
        newest = await store.list_tasks(None, 1, None)
        if not newest:
            raise TaskNotFound(f"no tasks yet ({LAST_TASK} names the most recent one)", {})
        return newest[0]
    if len(task_id) >= MIN_PREFIX and _PREFIX.fullmatch(task_id):
        return await _by_prefix(store, task_id)
    raise TaskNotFound(f"no task with id {task_id!r}", {"task_id": task_id})


async def _by_prefix(store: Store, prefix: str) -> TaskRow:
    # Ids are ordered: those starting with the prefix are the greatest ids below prefix + "g"
    # ("g" follows every hex digit), so one indexed page finds them, however many tasks.
    rows = await store.list_tasks(None, CANDIDATES + 1, prefix + "g")
    found = [r for r in rows if r.id.startswith(prefix)]
    if not found:
        raise TaskNotFound(f"no task with id {prefix!r} or starting with it", {"task_id": prefix})
    if len(found) == 1:
        return found[0]
    shown = [r.id for r in found[:CANDIDATES]]
    more = " and more" if len(found) > CANDIDATES else ""
    raise InvalidParams(
        f"task_id: {prefix!r} is the start of more than one task ({', '.join(shown)}{more}); "
        "give more of the id",
        {"field": "task_id", "task_id": prefix, "candidates": shown},
    )


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


_CHANGED_TOKEN = re.compile(r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)/(t[0-9a-f]{1,62})")


def _changed_after(token: str) -> tuple[float, str]:
    """The (time, id) a page token of `changed` names; InvalidParams for anything else."""
    found = _CHANGED_TOKEN.fullmatch(token)
    if found is None:
        raise InvalidParams(
            "page_token: not a token this daemon gave; start again without one",
            {"field": "page_token"},
        )
    return float(found[1]), found[2]


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
        states = params.states()
        if states is None or len(states) == 1:
            state = states[0] if states else None
            rows = await self._store.list_tasks(state, params.limit + 1, params.cursor)
        else:
            # Any of several states: the newest limit + 1 of each, merged, are the newest
            # limit + 1 of all (ids order tasks by submission, in the store and here alike).
            rows = []
            for state in states:
                rows += await self._store.list_tasks(state, params.limit + 1, params.cursor)
            rows = sorted(rows, key=lambda r: r.id, reverse=True)[: params.limit + 1]
        page = rows[: params.limit]
        return TaskPage(
            tasks=[summary(r) for r in page],
            next_cursor=page[-1].id if len(rows) > params.limit else None,
        )

    async def changed(
        self,
        states: Sequence[str] | None,
        limit: int,
        page_token: str | None = None,
        changed_since: float | None = None,
    ) -> tuple[Sequence[TaskSummary], str | None]:
        """Tasks whose state changed last first, and the token of the next page (None: last).

        For A2A's ListTasks, which orders by last update. A token names the last task of the
        page before by (state change time, id), so it stays valid while tasks change; a task
        whose state changes while a client pages moves to the front and is not seen again in
        that listing (as with the A2A SDK's own store)."""
        after = _changed_after(page_token) if page_token else None
        rows = await self._store.tasks_by_update(states, limit + 1, after, changed_since)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return [summary(r) for r in page], (
            None if last is None else f"{last.updated_at!r}/{last.id}"
        )

    async def count_changed(self, states: Sequence[str] | None, changed_since: float | None) -> int:
        """How many tasks `changed` lists on all its pages together."""
        return await self._store.count_tasks(states, changed_since)
