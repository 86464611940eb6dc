"""Tool calls through the model path: `call_model(tools=...)` and `ModelCaller` against the
simulator's code scripts over real HTTP with the real litellm client, streamed and not; the
`stream` tier option for plain and structured calls; the scripted caller's tool calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support import KEY_ENV, PREMIUM
from support.scripted import ScriptedCaller
from support.simulator import calls, running_simulator, stats

from roles.calls import CallOutput, ToolCall, assistant_message, tool_message
from roles.model_caller import ModelCaller
from roles.models.gateway import ModelConfigError, ModelTier, UsageRecord, call_model
from roles.plan.schema import Review

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}
SECRET = "sk-sim-secret-tools"
#: Fixed token counts no estimate would land on: seen in a record, they came from the server.
TOKENS = {"prompt_tokens": 555, "completion_tokens": {"executor": 777, "orchestrator": 666}}


def tool(name: str, **properties: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {p: {"type": kind} for p, kind in properties.items()},
            },
        },
    }


TOOLS = [
    tool("list_files"),
    tool("read_file", path="string"),
    tool("write_file", path="string", content="string"),
    tool("finish", summary="string"),
]
SCRIPT = [
    {"tool": "write_file", "args": {"path": "{stream}/a.py", "content": "x = {round}\n"}},
    {
        "say": "Reading both.",
        "calls": [
            {"tool": "read_file", "args": {"path": "a"}},
            {"tool": "read_file", "args": {"path": "b"}},
        ],
    },
    {"say": "Nothing to call now."},
]
SCENARIO = {**FAST, **TOKENS, "code": {"streams": {"s1": SCRIPT}}}
START = [
    {"role": "system", "content": "You are a coder."},
    {"role": "user", "content": "Write the thing."},
]


@pytest.fixture(autouse=True)
def sim_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def tier(sim: Any, **kw: Any) -> ModelTier:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("backoff_s", 0.01)
    return ModelTier(model=PREMIUM, api_base=sim.api_base, api_key_env=KEY_ENV, **kw)


async def ask(
    t: ModelTier,
    messages: list[dict[str, Any]],
    records: list[UsageRecord] | None = None,
    **kw: Any,
) -> Any:
    kw.setdefault("stream_id", "s1")
    kw.setdefault("tools", TOOLS)
    kw.setdefault("purpose", "execute")
    return await call_model(
        t,
        messages,
        role="executor",
        task_id="t-tools",
        on_record=records.append if records is not None else None,
        **kw,
    )


def answered(messages: list[dict[str, Any]], result: Any, *results: str) -> list[dict[str, Any]]:
    """The conversation with the model's answer and a result for each of its tool calls."""
    out = [*messages, assistant_message(result.text, result.tool_calls)]
    for call, text in zip(result.tool_calls, results, strict=True):
        out.append(tool_message(call.id, text))
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_conversation_follows_the_script_step_by_step(stream: bool) -> None:
    records: list[UsageRecord] = []
    with running_simulator(SCENARIO) as sim:
        t = tier(sim, stream=stream)
        first = await ask(t, START, records)
        assert first.text == ""
        assert first.tool_calls == [
            ToolCall("call_s1_r0_0_0", "write_file", '{"path": "s1/a.py", "content": "x = 0\\n"}')
        ]
        convo = answered(START, first, "wrote s1/a.py")

        second = await ask(t, convo, records)
        assert second.text == "Reading both."
        assert [(c.name, json.loads(c.arguments)) for c in second.tool_calls] == [
            ("read_file", {"path": "a"}),
            ("read_file", {"path": "b"}),
        ]
        assert len({c.id for c in [*first.tool_calls, *second.tool_calls]}) == 3
        convo = answered(convo, second, "content of a", "content of b")

        third = await ask(t, convo, records)
        assert (third.text, third.tool_calls) == ("Nothing to call now.", [])
        convo = [*convo, assistant_message(third.text, []), {"role": "user", "content": "Go on."}]

        # The script is used up: finish, with a summary naming the stream.
        last = await ask(t, convo, records)
        assert [c.name for c in last.tool_calls] == ["finish"]
        assert "s1" in json.loads(last.tool_calls[0].arguments)["summary"]

        sent = calls(sim.url, stream_id="s1")
    assert [c["streaming"] for c in sent] == [stream] * 4
    assert [c["code_step"] for c in sent] == [0, 1, 2, 3]
    assert [c["tool_calls"] for c in sent] == [
        ["write_file"],
        ["read_file", "read_file"],
        [],
        ["finish"],
    ]
    # What the model was told: the results new since its last answer.
    assert [c["tool_results"] for c in sent] == [0, 1, 3, 3]
    assert [c["new_results"] for c in sent] == [
        [],
        ["wrote s1/a.py"],
        ["content of a", "content of b"],
        [],
    ]
    assert sent[0]["tools"] == ["list_files", "read_file", "write_file", "finish"]
    # Usage as the server counted it (streamed: from the final chunk), with a price.
    assert [(r.prompt_tokens, r.completion_tokens) for r in records] == [(555, 777)] * 4
    assert all(r.outcome == "ok" and r.cost_usd for r in records)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_an_empty_or_cut_tool_answer_is_retried(stream: bool) -> None:
    failures = [
        {"kind": "empty", "purpose": "execute", "first": 1},
        {"kind": "truncated", "purpose": "execute", "stream": "s1", "first": 2},
    ]
    records: list[UsageRecord] = []
    with running_simulator({**SCENARIO, "failures": failures}) as sim:
        result = await ask(tier(sim, stream=stream), START, records)
    assert [c.name for c in result.tool_calls] == ["write_file"]
    assert [r.outcome for r in records] == ["error", "error", "ok"]
    assert "empty" in (records[0].error or "")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_malformed_arguments_come_back_as_written_and_the_step_is_asked_again(
    stream: bool,
) -> None:
    failures = [{"kind": "malformed", "purpose": "execute", "first": 1}]
    with running_simulator({**SCENARIO, "failures": failures}) as sim:
        t = tier(sim, stream=stream)
        bad = await ask(t, START)
        [call] = bad.tool_calls
        assert call.name == "write_file"
        with pytest.raises(ValueError):
            json.loads(call.arguments)
        assert '{"path": "s1/a.py", "content": "x = 0\\n"}'.startswith(call.arguments)
        # The engine tells the model; the model tries the same step again, whole this time.
        convo = answered(START, bad, "your arguments were not valid JSON")
        again = await ask(t, convo)
        sent = calls(sim.url, stream_id="s1")
    assert json.loads(again.tool_calls[0].arguments) == {"path": "s1/a.py", "content": "x = 0\n"}
    assert [c["code_step"] for c in sent] == [0, 0]
    assert sent[0]["injected"] == "malformed"


async def test_a_round_has_its_own_script_and_other_streams_the_default() -> None:
    scenario = {
        **FAST,
        "code": {
            "streams": {
                "s1": SCRIPT,
                "s1@r1": [{"tool": "read_file", "args": {"path": "r{round}"}}],
            },
            "default": [{"tool": "list_files", "args": {"path": "{stream}"}}],
        },
    }
    with running_simulator(scenario) as sim:
        t = tier(sim)
        round1 = await ask(t, START, round=1)
        other = await ask(t, START, stream_id="s2")
    assert [(c.name, c.arguments) for c in round1.tool_calls] == [("read_file", '{"path": "r1"}')]
    assert [(c.name, c.arguments) for c in other.tool_calls] == [("list_files", '{"path": "s2"}')]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_plain_and_structured_calls_stream_with_usage(stream: bool) -> None:
    records: list[UsageRecord] = []
    with running_simulator({**FAST, **TOKENS}) as sim:
        t = tier(sim, stream=stream)
        plain = await ask(t, START, records, tools=None, purpose="merge", stream_id=None)
        review = await call_model(
            t,
            START,
            role="orchestrator",
            purpose="review",
            task_id="t-tools",
            stream_id="s1",
            response_model=Review,
            on_record=records.append,
        )
        sent = calls(sim.url)
    assert plain.text.startswith("# Result") and plain.tool_calls == []
    assert isinstance(review.parsed, Review) and review.parsed.verdict == "accept"
    assert [c["streaming"] for c in sent] == [stream, stream]
    assert [(r.prompt_tokens, r.completion_tokens) for r in records] == [(555, 777), (555, 666)]


async def test_tools_and_a_response_model_are_not_combined() -> None:
    with pytest.raises(ValueError, match="not both"):
        await call_model(
            ModelTier(model=PREMIUM, api_base="http://127.0.0.1:9/v1"),
            START,
            role="executor",
            purpose="execute",
            task_id="t",
            tools=TOOLS,
            response_model=Review,
        )


async def test_the_model_caller_hands_back_tool_calls() -> None:
    records: list[UsageRecord] = []
    with running_simulator(SCENARIO) as sim:
        caller = ModelCaller({"executor": tier(sim, stream=True)}, "t-caller", records.append)
        out = await caller(
            "executor", "execute", START, key="exec:s1:r0:a0", stream_id="s1", tools=TOOLS
        )
        [sent] = calls(sim.url)
    assert [c.name for c in out.tool_calls] == ["write_file"]
    assert (sent["step"], sent["task_id"]) == ("exec:s1:r0:a0", "t-caller")
    assert len(records) == 1


def test_the_stream_option_of_a_tier() -> None:
    assert ModelTier.from_config({"model": "gpt-5", "stream": True}).stream is True
    assert ModelTier.from_config({"model": "gpt-5"}).stream is False
    with pytest.raises(ModelConfigError, match=r"models\.executor\.stream"):
        ModelTier.from_config({"model": "gpt-5", "stream": "yes"}, where="models.executor.")


async def test_the_scripted_caller_answers_with_tool_calls() -> None:
    write = ToolCall("c1", "write_file", '{"path": "a", "content": "x"}')
    reads = [ToolCall("c2", "read_file", '{"path": "a"}'), ToolCall("c3", "read_file", "{}")]
    model = ScriptedCaller(
        {
            "exec:s1:*": [write, reads, CallOutput("done", None, [ToolCall("c4", "finish", "{}")])],
            "exec:s2:*": write,
        }
    )
    answers = [
        await model("executor", "execute", START, key=f"exec:s1:r0:s{i}", tools=TOOLS)
        for i in range(3)
    ]
    assert [a.tool_calls for a in answers[:2]] == [[write], reads]
    assert (answers[2].text, [c.name for c in answers[2].tool_calls]) == ("done", ["finish"])
    assert model.of("exec:s1:*")[0].tool_names == [
        "list_files",
        "read_file",
        "write_file",
        "finish",
    ]
    # Tool calls for a call that offered no tools is a mistake in the test's script.
    with pytest.raises(TypeError, match="no tools"):
        await model("executor", "execute", START, key="exec:s2:r0:a0")


async def test_cancelling_a_streamed_tool_call_closes_the_request() -> None:
    records: list[UsageRecord] = []
    scenario = {**SCENARIO, "latency": {"executor": 30.0}}
    with running_simulator(scenario) as sim:
        task = asyncio.create_task(ask(tier(sim, stream=True, timeout_s=60), START, records))
        await until(lambda: stats(sim.url)["in_flight"] == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: calls(sim.url)[0]["status"] is not None)
        [sent] = calls(sim.url)
    assert sent["disconnected"] and sent["status"] == 499
    assert [(r.outcome, r.error) for r in records] == [("error", "cancelled")]


async def until(check: Any, within_s: float = 10.0) -> None:
    """Poll `check` (it reads the simulator's stats over HTTP) until it holds."""
    async with asyncio.timeout(within_s):
        while True:
            if await asyncio.to_thread(check):
                return
            await asyncio.sleep(0.02)
