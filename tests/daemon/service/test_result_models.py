"""The service's result models write exactly the JSON clients have always read.

In-process and fast: the views are built from store rows by hand, so a change to a model that
would change the wire (a field renamed, a null dropped, a key added) fails here by name.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.service.errors import ERROR_CODES, ServiceError
from daemon.service.params import ListParams
from daemon.service.results import (
    Canceled,
    ConcurrencyView,
    ConfigEntry,
    Submitted,
    wire,
)
from daemon.service.task_views import TaskViews
from daemon.store.store import QuestionRow, StreamRow, TaskRow

TASK = TaskRow(
    id="t1",
    state="running",
    goal="Write a note",
    context="ctx",
    options_json='{"approval":"required"}',
    created_at=1.5,
    updated_at=2.5,
    plan_json='{"streams": []}',
)
STREAM = StreamRow(
    task_id="t1",
    stream_id="a",
    title="Part a",
    spec_json='{"depends_on": ["b"]}',
    state="running",
    rounds=1,
    started_at=3.0,
)
QUESTION = QuestionRow(id="q1", task_id="t1", stream_id="a", question="Which?", created_at=4.0)


class _Store:
    async def get_task(self, task_id: str) -> TaskRow | None:
        return TASK if task_id == "t1" else None

    async def streams_of(self, task_id: str) -> list[StreamRow]:
        return [STREAM]

    async def questions_of(self, task_id: str) -> list[QuestionRow]:
        return [QUESTION]

    async def list_tasks(self, state: str | None, limit: int, cursor: str | None) -> list[TaskRow]:
        return [TASK, TASK][:limit]


def _json(value: Any) -> str:
    # Compared as text: key order and nulls are part of what clients see.
    return json.dumps(value)


async def test_a_task_in_full_is_the_documented_shape() -> None:
    views = TaskViews(_Store())  # type: ignore[arg-type]
    got = wire(await views.detail(TASK))
    expected = {
        "id": "t1",
        "state": "running",
        "goal": "Write a note",
        "created_at": 1.5,
        "updated_at": 2.5,
        "error": None,
        "repo": None,
        "context": "ctx",
        "options": {"approval": "required"},
        "plan": {"streams": []},
        "streams": [
            {
                "id": "a",
                "parent": None,
                "title": "Part a",
                "state": "running",
                "depends_on": ["b"],
                "output": None,
                "verdict": None,
                "reason": None,
                "rounds": 1,
                "depth": 0,
                "started_at": 3.0,
                "ended_at": None,
                "code": None,
            }
        ],
        "questions": [{"id": "q1", "stream_id": "a", "question": "Which?", "answer": None}],
        "result": None,
        "report": None,
        "code": None,
    }
    assert _json(got) == _json(expected)


async def test_a_page_lists_summaries_and_the_next_cursor() -> None:
    page = wire(await TaskViews(_Store()).list(ListParams(limit=1)))  # type: ignore[arg-type]
    summary = {
        "id": "t1",
        "state": "running",
        "goal": "Write a note",
        "created_at": 1.5,
        "updated_at": 2.5,
        "error": None,
        "repo": None,
    }
    assert _json(page) == _json({"tasks": [summary], "next_cursor": "t1"})


def test_duplicate_is_there_only_for_a_retry() -> None:
    assert wire(Submitted(task_id="t1", state="queued")) == {"task_id": "t1", "state": "queued"}
    retry = wire(Submitted(task_id="t1", state="running", duplicate=True))
    assert retry == {"task_id": "t1", "state": "running", "duplicate": True}
    assert wire(Canceled(task_id="t1", state="canceled")) == {"task_id": "t1", "state": "canceled"}


def test_config_values_pass_through_as_they_are() -> None:
    for value in (5, 0.8, "always", None, [["a/", "b/"]], {"parallelize": "never"}):
        entry = ConfigEntry(key="k", value=value, source="default")
        assert wire(entry) == {"key": "k", "value": value, "source": "default"}


def test_the_governors_snapshot_passes_through_with_keys_it_adds_later() -> None:
    memory = {
        "total": 8,
        "available": 4,
        "used_fraction": 0.5,
        "daemon_rss": 1,
        "per_agent_estimate": 2,
        "source": "machine",
        "soft": 0.8,
        "hard": 0.95,
        "reserve_bytes": 0,
        "later": "kept",
    }
    snapshot = {
        "limit": 5,
        "target": 5,
        "ceiling": 5,
        "floor": 1,
        "in_flight": 0,
        "waiting": 0,
        "memory": memory,
        "reason": "at ceiling",
        "paused": False,
        "last_change": None,
    }
    assert _json(wire(ConcurrencyView.model_validate(snapshot))) == _json(snapshot)


def test_every_error_is_documented_with_its_own_code() -> None:
    def tree(cls: type[ServiceError]) -> list[type[ServiceError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in tree(sub))]

    errors = tree(ServiceError)
    codes = [e.code for e in errors]
    assert len(set(codes)) == len(codes)
    for error in errors:
        assert ERROR_CODES[error.code] == error.remedy
        assert 400 <= error.http_status < 600


# --- code tasks ---------------------------------------------------------------------------------

TASK_CODE = {
    "repo": "/src/app",
    "repo_given": "/src/app/sub/..",
    "base": "main",
    "base_commit": "a" * 40,
    "include_uncommitted": True,
    "snapshot_commit": "b" * 40,
    # Added by the engine later: the merged change and how it was applied, typed; any other
    # key passes through as written.
    "result": {
        "branch": "tierd/t2/_result",
        "head": "d" * 40,
        "files": ["src/a.py"],
        "insertions": 40,
        "deletions": 2,
        "tests": {"command": "make test", "exit_code": 0, "duration_s": 1.5, "output": "ok"},
    },
    "applied": {
        "how": "merge",
        "branch": "main",
        "commit": "e" * 40,
        "path": None,
        "head": "d" * 40,
        "already": None,
    },
    "branches": ["tierd/t2/s1"],
}
STREAM_CODE = {
    "branch": "tierd/t2/s1",
    "worktree": "/home/.tierd/worktrees/t2/s1",
    "start_commit": "b" * 40,
    "head": "c" * 40,
    "files": ["src/a.py", "tests/test_a.py"],
    "insertions": 40,
    "deletions": 2,
    "commands": [
        {"command": "python -m pytest -q", "name": "test", "exit_code": 1, "duration_s": 0.5},
        {"command": "python -m pytest -q", "name": "test", "exit_code": 0, "duration_s": 0.4},
    ],
    "steps": 7,
    "max_steps": 40,
    "setup": None,
    "ended": "finish",
    "test_run": {"command": "make test", "exit_code": 0, "duration_s": 0.4, "output": "2 passed"},
    "fixes": [
        {
            "round": 0,
            "problem": "off by one",
            "by": "orchestrator",
            "steps": 3,
            "max_steps": 8,
            "commands": [],
            "summary": "Fixed the bound.",
            "head": "c" * 40,
            "files": ["src/a.py"],
            "test_run": None,
            "outcome": "fix",
        }
    ],
}


class _CodeStore(_Store):
    def __init__(self, task: TaskRow, streams: list[StreamRow]) -> None:
        self.task, self.streams = task, streams

    async def streams_of(self, task_id: str) -> list[StreamRow]:
        return self.streams

    async def questions_of(self, task_id: str) -> list[QuestionRow]:
        return []

    async def list_tasks(self, state: str | None, limit: int, cursor: str | None) -> list[TaskRow]:
        return [self.task, TASK]


def _code_task(code: dict[str, Any]) -> TaskRow:
    return TASK.model_copy(update={"id": "t2", "code_json": json.dumps(code)})


async def test_a_code_task_shows_its_repository_and_each_streams_facts() -> None:
    stream = STREAM.model_copy(update={"code_json": json.dumps(STREAM_CODE)})
    text = STREAM.model_copy(update={"stream_id": "b"})
    task = _code_task(TASK_CODE)
    views = TaskViews(_CodeStore(task, [stream, text]))  # type: ignore[arg-type]
    got = wire(await views.detail(task))
    assert got["repo"] == "/src/app"
    assert got["code"] == TASK_CODE
    assert got["streams"][0]["code"] == STREAM_CODE
    assert got["streams"][1]["code"] is None  # a stream without facts (yet)
    page = wire(await views.list(ListParams(limit=5)))
    assert [t["repo"] for t in page["tasks"]] == ["/src/app", None]


async def test_partial_stream_facts_fill_the_rest_with_nulls() -> None:
    # The engine writes what it knows as it goes: a worktree before any step.
    early = {"branch": "tierd/t2/s1", "worktree": "/w", "start_commit": "b" * 40}
    stream = STREAM.model_copy(update={"code_json": json.dumps(early)})
    task = _code_task(TASK_CODE)
    got = wire(await TaskViews(_CodeStore(task, [stream])).detail(task))  # type: ignore[arg-type]
    code = got["streams"][0]["code"]
    assert code["branch"] == "tierd/t2/s1" and code["files"] == [] and code["commands"] == []
    assert code["steps"] is None and code["insertions"] is None and code["setup"] is None


async def test_facts_that_do_not_fit_are_left_out_not_a_failed_read(caplog: Any) -> None:
    stream = STREAM.model_copy(update={"code_json": json.dumps({"files": 3})})
    task = _code_task({"repo": "/src/app"})  # no base: not what submit writes
    got = wire(await TaskViews(_CodeStore(task, [stream])).detail(task))  # type: ignore[arg-type]
    assert got["code"] is None and got["streams"][0]["code"] is None
    assert got["repo"] == "/src/app"
    assert "do not fit TaskCode" in caplog.text and "do not fit StreamCode" in caplog.text
