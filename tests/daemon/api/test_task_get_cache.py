"""task/get and task/list answered from what the JSON-RPC dispatcher kept, never stale.

In process, over a real store: the dispatcher keeps an answer as JSON until the store next
commits a write, whatever wrote (a state change with its event, a stream's row, a question,
an answer, a code task's facts, raw SQL, a deletion): after each kind of write, task/get at
once gives exactly what a fresh build gives. And it does keep: asked again with nothing
written (or only read) it builds nothing, many clients at once share one build, an answer
built while the store wrote is not kept, errors are not kept. The kept answer goes out as
the bytes `json.dumps` writes for the reply.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from daemon.api.detail_cache import DetailCache, json_bytes
from daemon.api.rpc import RawResult, RpcDispatcher, encode_reply
from daemon.service.errors import TASK_NOT_FOUND
from daemon.service.params import ListParams, TaskIdParams
from daemon.service.results import TaskDetail, TaskPage, wire
from daemon.service.task_views import TaskViews
from daemon.store.store import QuestionRow, Store, TaskRow
from daemon.store.write_mark import write_mark


class CountingViews:
    """The service's task reads (its own `TaskViews`) over a real store, counting builds."""

    def __init__(self, store: Store) -> None:
        self.views = TaskViews(store)
        self.builds = 0
        #: Run once in the middle of the next build (a write racing it), then cleared.
        self.during_build: Callable[[], Awaitable[Any]] | None = None

    async def get(self, params: TaskIdParams) -> TaskDetail:
        self.builds += 1
        detail = await self.views.get(params)
        if self.during_build is not None:
            racing, self.during_build = self.during_build, None
            await racing()
        return detail

    async def list(self, params: ListParams) -> TaskPage:
        self.builds += 1
        return await self.views.list(params)


class Env:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.views = CountingViews(store)
        self.rpc = RpcDispatcher(self.views)  # type: ignore[arg-type]

    async def call(self, method: str, params: dict[str, Any], id_: Any = 1) -> bytes:
        """The reply's bytes as POST /rpc sends them."""
        request = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
        return encode_reply(await self.rpc.handle_body(json.dumps(request).encode()))

    async def get(self, task_id: str) -> bytes:
        return await self.call("task/get", {"task_id": task_id})

    async def fresh(self, task_id: str) -> bytes:
        """What task/get answers when built now, from the store, without the dispatcher."""
        detail = await TaskViews(self.store).get(TaskIdParams(task_id=task_id))
        return json_bytes({"jsonrpc": "2.0", "result": wire(detail), "id": 1})


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    try:
        yield Env(store)
    finally:
        await store.close()


def _task(task_id: str) -> TaskRow:
    now = time.time()
    return TaskRow(
        id=task_id, state="queued", goal=f"goal of {task_id}", created_at=now, updated_at=now
    )


async def test_a_kept_answer_is_served_until_the_store_writes(env: Env) -> None:
    await env.store.create_task(_task("t1"))
    first = await env.get("t1")
    assert first == await env.fresh("t1")
    assert json.loads(first)["result"]["state"] == "queued"
    assert env.views.builds == 1
    # Asked again, and after reads only (reading does not make what was read stale): kept.
    assert await env.get("t1") == first
    await env.store.streams_of("t1")
    await env.store.get_task("t1")
    assert await env.get("t1") == first
    assert env.views.builds == 1
    await env.store.transition("t1", "planning")
    changed = await env.get("t1")
    assert env.views.builds == 2
    assert json.loads(changed)["result"]["state"] == "planning"


async def test_every_kind_of_write_is_seen_by_the_next_task_get(env: Env) -> None:
    store = env.store
    await store.create_task(_task("t1"))
    question = QuestionRow(
        id="q1", task_id="t1", stream_id="s1", question="Which region?", created_at=time.time()
    )
    code = {"repo": "/r", "base": "HEAD", "base_commit": "0" * 40}
    writes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("a state change with its event", lambda: store.transition("t1", "planning")),
        ("fields without an event", lambda: store.update_task("t1", plan_json='{"summary": "p"}')),
        ("another state", lambda: store.transition("t1", "running")),
        (
            "a stream's row",
            lambda: store.upsert_stream("t1", "s1", title="Part 1", state="running"),
        ),
        (
            "a stream's output with its event",
            lambda: store.upsert_stream(
                "t1", "s1", output="draft", event=("stream.state", {"stream_id": "s1"})
            ),
        ),
        ("a question", lambda: store.add_question(question)),
        ("waiting for it", lambda: store.transition("t1", "input_required")),
        ("its answer", lambda: store.answer_questions("t1", {"q1": "EMEA"}, resume="running")),
        ("a code task's facts", lambda: store.set_task_code("t1", code)),
        (
            "raw SQL",
            lambda: store.execute_raw("UPDATE tasks SET goal = 'rewritten' WHERE id = 't1'"),
        ),
        ("the end", lambda: store.transition("t1", "canceled", reason="canceled by client")),
    ]
    before = await env.get("t1")
    for what, write in writes:
        await write()
        now = await env.get("t1")
        assert now == await env.fresh("t1"), what
        assert now != before, f"{what}: the write changes the view, so a stale answer shows"
        before = now
    # An event that changes no row leaves the answer as it was, rebuilt or not.
    await store.append_event("t1", "review.verdict", {"stream_id": "s1", "verdict": "accept"})
    assert await env.get("t1") == await env.fresh("t1") == before
    done = json.loads(before)["result"]
    assert done["state"] == "canceled" and done["goal"] == "rewritten"
    assert done["questions"] == [
        {"id": "q1", "stream_id": "s1", "question": "Which region?", "answer": "EMEA"}
    ]
    assert done["streams"][0]["output"] == "draft" and done["code"]["repo"] == "/r"
    # Deleted: the next task/get says there is no such task.
    await store.delete_ended_task("t1")
    gone = json.loads(await env.get("t1"))
    assert gone["error"]["code"] == TASK_NOT_FOUND


async def test_a_prefix_and_last_follow_new_tasks(env: Env) -> None:
    await env.store.create_task(_task("t0ab1"))
    assert json.loads(await env.get("@last"))["result"]["id"] == "t0ab1"
    assert json.loads(await env.get("t0ab"))["result"]["id"] == "t0ab1"
    page = await env.call("task/list", {"limit": 5})
    assert [t["id"] for t in json.loads(page)["result"]["tasks"]] == ["t0ab1"]
    await env.store.create_task(_task("t0ab2"))
    assert json.loads(await env.get("@last"))["result"]["id"] == "t0ab2"
    ambiguous = json.loads(await env.get("t0ab"))
    assert ambiguous["error"]["data"]["candidates"] == ["t0ab2", "t0ab1"]
    page = await env.call("task/list", {"limit": 5})
    assert [t["id"] for t in json.loads(page)["result"]["tasks"]] == ["t0ab2", "t0ab1"]


async def test_clients_asking_at_once_share_one_build(env: Env) -> None:
    await env.store.create_task(_task("t1"))
    answers = await asyncio.gather(*(env.get("t1") for _ in range(20)))
    assert env.views.builds == 1
    assert set(answers) == {await env.fresh("t1")}


async def test_an_answer_built_while_the_store_wrote_is_not_kept(env: Env) -> None:
    await env.store.create_task(_task("t1"))
    env.views.during_build = lambda: env.store.transition("t1", "planning")
    raced = json.loads(await env.get("t1"))
    assert raced["result"]["state"] == "queued"  # read before the write: right when asked
    after = await env.get("t1")
    assert env.views.builds == 2  # not served from the build the write raced
    assert json.loads(after)["result"]["state"] == "planning"
    assert after == await env.fresh("t1")


async def test_errors_and_bad_params_are_not_kept(env: Env) -> None:
    missing = json.loads(await env.get("t9"))
    assert missing["error"]["code"] == TASK_NOT_FOUND
    await env.store.create_task(_task("t9"))
    assert json.loads(await env.get("t9"))["result"]["id"] == "t9"
    for bad in ({"task_id": ""}, {"task_id": 9}, {"task_id": "t9", "extra": 1}):
        reply = json.loads(await env.call("task/get", bad))
        assert reply["error"]["code"] == -32602, bad


@pytest.mark.parametrize("id_", [1, 0, -7, 2.5, "abc", "é€😀", None])
async def test_a_kept_answer_goes_out_as_json_dumps_writes_the_reply(env: Env, id_: Any) -> None:
    await env.store.create_task(_task("t1"))
    await env.get("t1")  # kept now
    reply = await env.call("task/get", {"task_id": "t1"}, id_=id_)
    result = json.loads(await env.fresh("t1"))["result"]
    assert reply == json_bytes({"jsonrpc": "2.0", "result": result, "id": id_})
    assert reply == json.dumps(
        {"jsonrpc": "2.0", "result": result, "id": id_},
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    ).encode("utf-8")


async def test_a_batch_with_kept_answers_is_what_json_dumps_writes(env: Env) -> None:
    await env.store.create_task(_task("t1"))
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "task/get", "params": {"task_id": "t1"}},
        {"jsonrpc": "2.0", "id": "b", "method": "no/such"},
        {"jsonrpc": "2.0", "id": 3, "method": "task/get", "params": {"task_id": "t1"}},
    ]
    replies = await env.rpc.handle_body(json.dumps(batch).encode())
    assert isinstance(replies[0]["result"], RawResult)
    plain = [{**r, "result": json.loads(r["result"].json)} if "result" in r else r for r in replies]
    assert encode_reply(replies) == json_bytes(plain)


def test_a_result_that_cannot_be_written_is_an_internal_error() -> None:
    reply = {"jsonrpc": "2.0", "result": RawResult(error=ValueError("NaN")), "id": 4}
    assert json.loads(encode_reply(reply)) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32603,
            "message": "Internal error",
            "data": {"detail": "the result could not be written as JSON", "type": "ValueError"},
        },
        "id": 4,
    }


def test_the_write_mark_moves_for_changed_rows_only(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    start = write_mark()
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM t")).all()
        conn.execute(text("UPDATE t SET x = 1 WHERE x = 2"))  # no row to change
    assert write_mark() == start
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        moved = write_mark()
        assert moved != start  # as soon as the row changed, before the commit
    assert write_mark() == moved
    engine.dispose()  # its connections close: what they counted stays in the mark
    assert write_mark() == moved


async def test_kept_answers_are_bounded_in_size() -> None:
    cache = DetailCache(max_bytes=100)
    built: list[str] = []

    def build(key: str, size: int) -> Callable[[], Awaitable[Any]]:
        async def make() -> Any:
            built.append(key)
            return "x" * size  # JSON: the string in quotes, size + 2 bytes

        return make

    assert await cache.get("a", build("a", 38)) == b'"' + b"x" * 38 + b'"'
    await cache.get("b", build("b", 38))
    assert cache.kept("a") is not None and cache.kept("b") is not None
    await cache.get("c", build("c", 38))  # 120 bytes in all: the oldest goes
    assert cache.kept("a") is None and cache.kept("b") is not None and cache.kept("c") is not None
    await cache.get("big", build("big", 200))  # over the bound alone: served, not kept
    assert cache.kept("big") is None and cache.kept("c") is not None
    assert built == ["a", "b", "c", "big"]


class _NoChangeCount:
    """A SQLite connection that does not tell its changed rows, as other databases' do not."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False)

    def __getattr__(self, name: str) -> Any:
        if name == "total_changes":
            raise AttributeError(name)
        return getattr(self._conn, name)


async def test_nothing_is_kept_while_a_database_without_a_change_count_is_open(
    env: Env, tmp_path: Path
) -> None:
    await env.store.create_task(_task("t1"))
    await env.get("t1")
    await env.get("t1")
    assert env.views.builds == 1
    path = str(tmp_path / "other.sqlite")
    other = create_engine("sqlite://", creator=lambda: _NoChangeCount(path))
    with other.connect() as conn:
        assert write_mark() is None
        assert await env.get("t1") == await env.get("t1") == await env.fresh("t1")
        assert env.views.builds == 3  # each one built
        conn.execute(text("SELECT 1"))
    other.dispose()
    assert write_mark() is not None
    await env.get("t1")
    assert env.views.builds == 3  # nothing was written: the answer kept before still holds
    await env.store.transition("t1", "planning")
    await env.get("t1")
    await env.get("t1")
    assert env.views.builds == 4
