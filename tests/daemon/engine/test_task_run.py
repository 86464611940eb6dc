"""The engine in process, on a scripted model: the real LangGraph program, store and memo, with
every model call answered by `support.scripted.ScriptedCaller`. No daemon, no HTTP, no
simulator: the DAG scheduler, the review and conflict loops, the human waits and the failure
paths in well under a second each, beside the end-to-end tests of the same behaviour."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from support.scripted import Call, ScriptedCaller

from daemon.engine.runner import Runner
from daemon.engine.settings import shipped_task_defaults
from daemon.engine.workflow import Workflow
from daemon.store.store import Store, TaskRow
from roles.models.errors import ModelCallError, ModelConfigError, ModelOutputError

_ids = itertools.count(1)


def spec(stream_id: str, deps: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": stream_id,
        "title": f"Stream {stream_id}",
        "job": f"Do {stream_id}.",
        "output_definition": f"The {stream_id} part.",
        "ownership": [f"{stream_id}/"],
        "depends_on": deps or [],
    }


def plan(*streams: dict[str, Any]) -> dict[str, Any]:
    return {"summary": "scripted", "streams": list(streams), "merge_instruction": "Join."}


class Signals:
    """The runner's `human_signal`/`wake`, alone."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def human_signal(self, task_id: str) -> asyncio.Event:
        return self._events.setdefault(task_id, asyncio.Event())

    def wake(self, task_id: str) -> None:
        event = self._events.pop(task_id, None)
        if event is not None:
            event.set()


class NoLimit:
    """A governor that always has a slot."""

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        yield

    def slot(self, task_id: str) -> Any:
        return self._slot()


class Engine:
    """A store in a temporary directory and the workflow over it, driven by a script."""

    def __init__(self, store: Store, model: ScriptedCaller) -> None:
        self.store = store
        self.model = model
        self.signals = Signals()
        self.workflow = Workflow(store, NoLimit(), signals=self.signals, models=model.models)

    async def submit(self, goal: str = "Write the launch note", **settings: Any) -> str:
        stored = shipped_task_defaults()
        stored.update(settings)
        now = time.time()
        task_id = f"t-scripted-{next(_ids)}"
        row = TaskRow(
            id=task_id,
            state="queued",
            goal=goal,
            created_at=now,
            updated_at=now,
            settings_json=json.dumps(stored),
        )
        await self.store.create_task(row)
        return task_id

    async def run(self, task_id: str, within_s: float = 20.0) -> TaskRow:
        async with asyncio.timeout(within_s):
            await self.workflow.run(task_id)
        row = await self.store.get_task(task_id)
        assert row is not None
        return row

    async def state_becomes(self, task_id: str, state: str, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while True:
                row = await self.store.get_task(task_id)
                if row is not None and row.state == state:
                    return
                await asyncio.sleep(0.01)

    async def events(self, task_id: str, type_: str) -> list[dict[str, Any]]:
        found = await self.store.events_after(0, task_id, limit=10_000)
        return [e["data"] for e in found if e["type"] == type_]

    async def streams(self, task_id: str) -> dict[str, Any]:
        return {s.stream_id: s for s in await self.store.streams_of(task_id)}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def script() -> Iterator[ScriptedCaller]:
    yield ScriptedCaller()


@pytest.fixture
async def engine(store: Store, script: ScriptedCaller) -> AsyncIterator[Engine]:
    e = Engine(store, script)
    await e.workflow.open(None)
    yield e
    await e.workflow.close()


# --- a whole task --------------------------------------------------------------------------------


async def test_a_task_runs_plan_streams_review_and_merge(engine: Engine) -> None:
    engine.model.add("plan:*", plan(spec("a"), spec("b", ["a"]), spec("c")))
    engine.model.add("merge:*", "THE MERGED RESULT")
    task_id = await engine.submit()
    row = await engine.run(task_id)
    assert (row.state, row.result, row.error) == ("completed", "THE MERGED RESULT", None)
    keys = engine.model.keys()
    assert keys[0] == "plan:0" and keys[-2:] == ["conflicts:0", "merge:0"]
    # b starts only once a is accepted, and is handed a's output.
    assert keys.index("exec:b:r0:a0") > keys.index("review:a:r0")
    assert "Output of stream 'a'" in engine.model.of("exec:b:*")[0].prompt
    assert {s.state for s in (await engine.streams(task_id)).values()} == {"accepted"}
    report = json.loads(row.report_json or "{}")
    assert report["state"] == "completed"
    calls = report["usage"]["per_role"]
    assert (calls["planner"]["calls"], calls["executor"]["calls"]) == (1, 3)
    assert calls["orchestrator"]["calls"] == 5  # three reviews, the conflict check, the merge
    assert len(await engine.events(task_id, "model.call")) == 9


async def test_a_finished_task_makes_no_call_when_it_runs_again(engine: Engine) -> None:
    engine.model.add("plan:*", plan(spec("a"), spec("b")))
    task_id = await engine.submit()
    assert (await engine.run(task_id)).state == "completed"
    made = len(engine.model.calls)
    fresh = Engine(engine.store, engine.model)  # a restarted daemon: new program, same store
    await fresh.workflow.open(None)
    try:
        assert (await fresh.run(task_id)).state == "completed"
    finally:
        await fresh.workflow.close()
    assert len(engine.model.calls) == made


# --- the DAG scheduler ---------------------------------------------------------------------------


async def test_streams_start_when_ready_not_level_by_level(engine: Engine) -> None:
    """`slow` answers only after `next` (which waits for `fast`) has started: with a barrier
    per dependency level this would never happen."""
    next_started = asyncio.Event()

    async def slow(call: Call) -> dict[str, Any]:
        await next_started.wait()
        return {"kind": "output", "output": "slow work"}

    def next_(call: Call) -> dict[str, Any]:
        next_started.set()
        return {"kind": "output", "output": "next work"}

    engine.model.add("plan:*", plan(spec("slow"), spec("fast"), spec("next", ["fast"])))
    engine.model.add("exec:slow:*", slow).add("exec:next:*", next_)
    row = await engine.run(await engine.submit(), within_s=10)  # a barrier would hang here
    assert row.state == "completed"
    assert engine.model.keys("exec:next:*") == ["exec:next:r0:a0"]


async def test_a_failed_stream_fails_its_dependants_and_the_task_not_its_siblings(
    engine: Engine,
) -> None:
    down = ModelCallError(
        "executor/execute: every attempt failed on openai/gpt-5-mini (4 attempts); last "
        "error: APIConnectionError: Connection refused"
    )
    engine.model.add("plan:*", plan(spec("a"), spec("b", ["a"]), spec("c")))
    engine.model.add("exec:a:*", down)
    task_id = await engine.submit()
    row = await engine.run(task_id)
    assert row.state == "failed"
    assert row.error is not None and row.error.startswith("2 stream(s) failed")
    assert "a: executor/execute: every attempt failed on openai/gpt-5-mini" in row.error
    assert "b: dependency 'a' failed" in row.error
    streams = await engine.streams(task_id)
    assert (streams["a"].state, streams["b"].state, streams["c"].state) == (
        "failed",
        "failed",
        "accepted",
    )
    assert engine.model.keys("exec:b:*") == []  # never started
    assert json.loads(row.report_json or "{}")["state"] == "failed"
    (failed,) = await engine.events(task_id, "attention")
    assert failed["kind"] == "failed"


async def test_a_split_runs_its_sub_streams_inside_the_parent(engine: Engine) -> None:
    split = {"kind": "split", "streams": [spec("x"), spec("y", ["x"])]}
    engine.model.add("plan:*", plan(spec("a"))).add("exec:a:r0:a0", split)
    task_id = await engine.submit()
    row = await engine.run(task_id)
    assert row.state == "completed"
    assert engine.model.keys("exec:*") == ["exec:a:r0:a0", "exec:a.x:r0:a0", "exec:a.y:r0:a0"]
    streams = await engine.streams(task_id)
    assert streams["a.y"].parent_id == "a" and streams["a"].reason == "all sub-streams accepted"
    assert "## Stream x" in (streams["a"].output or "")


# --- the review loop -----------------------------------------------------------------------------


async def test_redo_rounds_are_bounded_then_the_human_is_asked(engine: Engine) -> None:
    redo = {"verdict": "redo", "reason": "too thin", "feedback": "ADD THE NUMBERS"}
    engine.model.add("plan:*", plan(spec("a"))).add("review:a:r0", redo).add("review:a:r1", redo)
    task_id = await engine.submit(**{"review.max_rounds": 1})
    run = asyncio.create_task(engine.run(task_id))
    await engine.state_becomes(task_id, "input_required")
    (question,) = await engine.store.questions_of(task_id)
    assert "did not pass review after 2 round(s)" in question.question
    await engine.store.answer_questions(task_id, {question.id: "USE Q3"}, resume="running")
    engine.signals.wake(task_id)
    row = await run
    assert row.state == "completed"
    assert "ADD THE NUMBERS" in engine.model.of("exec:a:r1:a0")[0].prompt
    assert "USE Q3" in engine.model.of("exec:a:r2:a0")[0].prompt
    assert (await engine.streams(task_id))["a"].rounds == 3
    # Every verdict is announced once; the acceptance's just before the stream's acceptance,
    # in the same write (a redo's at once: the next round takes a model call first).
    found = await engine.store.events_after(0, task_id, limit=10_000)
    said = [(e["type"], e["data"].get("verdict"), e["data"].get("state")) for e in found]
    verdicts = [v for t, v, _ in said if t == "review.verdict"]
    assert verdicts == ["redo", "redo", "accept"]
    last = said.index(("review.verdict", "accept", None))
    assert said[last + 1] == ("stream.state", "accept", "accepted")


async def test_a_question_waits_only_when_no_stream_can_progress(engine: Engine) -> None:
    asked = {"kind": "question", "question": "Which market?"}
    engine.model.add("plan:*", plan(spec("a"), spec("b"))).add("exec:a:r0:a0", asked)
    task_id = await engine.submit()
    run = asyncio.create_task(engine.run(task_id))
    await engine.state_becomes(task_id, "input_required")
    assert engine.model.keys("review:b:*") == ["review:b:r0"]  # b finished before the wait
    (question,) = await engine.store.questions_of(task_id)
    await engine.store.answer_questions(task_id, {question.id: "THE NORDICS"}, resume="running")
    engine.signals.wake(task_id)
    assert (await run).state == "completed"
    assert "THE NORDICS" in engine.model.of("exec:a:r0:a1")[0].prompt


# --- the conflict loop ---------------------------------------------------------------------------


async def test_a_conflict_sends_the_stream_back_then_the_outputs_are_checked_again(
    engine: Engine,
) -> None:
    clash = {"streams": ["a", "b"], "description": "a contradicts b", "redo": ["a"]}
    conflict = {"conflicts": [{**clash, "feedback": "AGREE WITH B"}]}
    engine.model.add("plan:*", plan(spec("a"), spec("b"))).add("conflicts:0", conflict)
    engine.model.add("exec:a:r100:a0", {"kind": "output", "output": "a, now agreeing"})
    task_id = await engine.submit()
    row = await engine.run(task_id)
    assert row.state == "completed"
    assert engine.model.keys("conflicts:*") == ["conflicts:0", "conflicts:1"]
    assert "AGREE WITH B" in engine.model.of("exec:a:r100:a0")[0].prompt
    assert engine.model.keys("exec:b:*") == ["exec:b:r0:a0"]  # only the stream in conflict
    a = (await engine.streams(task_id))["a"]
    assert (a.output, a.rounds) == ("a, now agreeing", 2)
    assert a.reason is not None and a.reason.startswith("after conflict review:")
    checks = await engine.events(task_id, "review.conflicts")
    assert [c["round"] for c in checks] == [0, 1]
    assert "a, now agreeing" in engine.model.of("merge:0")[0].prompt


async def test_a_conflict_check_that_never_parses_fails_the_task_clearly(engine: Engine) -> None:
    """A `ModelOutputError` outside any stream ends the task as a clear failure naming the
    role, the model and the cause, never as an internal error."""
    engine.model.add("plan:*", plan(spec("a")))
    engine.model.add(
        "conflicts:*",
        ModelOutputError(
            "orchestrator/conflicts: the answer of openai/gpt-5 never parsed as ConflictReport "
            "after 2 repair request(s): the answer is not valid JSON",
            role="orchestrator",
            model="openai/gpt-5",
        ),
    )
    task_id = await engine.submit()
    row = await engine.run(task_id)
    assert row.state == "failed"
    assert row.error is not None
    for part in ("orchestrator/conflicts", "openai/gpt-5", "ConflictReport", "not valid JSON"):
        assert part in row.error
    assert "internal error" not in row.error
    assert engine.model.keys("merge:*") == []
    report = json.loads(row.report_json or "{}")
    assert report["state"] == "failed" and report["streams"][0]["state"] == "accepted"
    (failed,) = await engine.events(task_id, "attention")
    assert failed["kind"] == "failed" and "orchestrator/conflicts" in failed["reason"]


async def test_a_tier_set_up_wrongly_fails_the_task_naming_the_key(engine: Engine) -> None:
    task_id = await engine.submit(**{"models.executor.model": ""})
    row = await engine.run(task_id)
    assert row.state == "failed"
    assert row.error == (
        "models.executor.model is required: a litellm model name, e.g. 'openai/gpt-5-mini'"
    )
    assert engine.model.calls == []


async def test_a_model_no_provider_serves_fails_the_task_before_any_call(engine: Engine) -> None:
    """`nosuchprovider/foo-7b` used to be found out only at the executor's first call, after
    the planner had been paid; it is refused before planning, naming the role and model."""
    engine.model.add("plan:*", plan(spec("a")))
    task_id = await engine.submit(**{"models.executor.model": "nosuchprovider/foo-7b"})
    row = await engine.run(task_id)
    assert row.state == "failed"
    assert row.error is not None and row.error.startswith(
        "models.executor.model: litellm cannot tell which provider serves 'nosuchprovider/foo-7b'"
    )
    assert engine.model.calls == []


async def test_the_models_of_settings_are_checked_for_the_service_before_a_task_exists(
    store: Store,
) -> None:
    """What the service asks at submit and config/set: the runner's check_models, the same
    check a task gets before its first call. Until the engine is loaded it says "not checked"
    (None) rather than hold a submit; asked to wait, it checks."""
    runner = Runner(store, NoLimit(), checkpoints=None)  # type: ignore[arg-type]
    try:
        stored = shipped_task_defaults()
        assert await runner.check_models(stored) is None  # the engine is not loaded yet
        assert await runner.check_models(stored, wait=True) == []
        local = {**stored, "models.executor.model": "openai/qwen2.5-coder"}
        local["models.executor.api_base"] = "http://127.0.0.1:11434/v1"
        (warning,) = await runner.check_models(local) or []
        assert "price" in warning and "openai/qwen2.5-coder" in warning
        with pytest.raises(ModelConfigError) as refused:
            await runner.check_models({**stored, "models.planner.model": "nosuchprovider/x"})
        assert (refused.value.role, refused.value.model) == ("planner", "nosuchprovider/x")
    finally:
        await runner.stop()


# --- merge and approval --------------------------------------------------------------------------


async def test_a_rejected_result_is_revised_with_the_comment_then_approved(
    engine: Engine,
) -> None:
    engine.model.add("plan:*", plan(spec("a")))
    task_id = await engine.submit(**{"review.approval": "required"})
    run = asyncio.create_task(engine.run(task_id))
    await engine.state_becomes(task_id, "awaiting_approval")
    reject = {"decision": "reject", "comment": "SHORTER PLEASE"}
    await engine.store.decide(task_id, reject, waiting="awaiting_approval", reject_to="merging")
    engine.signals.wake(task_id)
    await engine.state_becomes(task_id, "awaiting_approval")
    await engine.store.decide(task_id, {"decision": "approve"}, waiting="awaiting_approval")
    engine.signals.wake(task_id)
    row = await run
    assert (row.state, row.result) == ("completed", "Merged result (revision 1)")
    assert "SHORTER PLEASE" in engine.model.of("merge:1")[0].prompt
