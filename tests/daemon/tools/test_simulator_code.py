"""The simulator's code scenarios: scripted tool calls on the wire (whole and streamed, in
OpenAI's format), the `[code]` table's validation, the stateless step, watched strings; and
the step memo giving a resumed task the same tool calls without asking the model again.
Real HTTP on a loopback port; the memo on a real store in tmp_path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint
from support import KEY_ENV, PREMIUM
from support.simulator import calls, running_simulator, stats

from daemon.engine.code.toolspec import TOOLS as REAL_TOOLS
from daemon.engine.gateway import TaskGateway
from daemon.store.store import Store
from daemon.tools.simulator import Scenario, load_scenario
from roles.calls import CallOutput, ToolCall
from roles.model_caller import ModelCaller
from roles.models.gateway import ModelTier

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("list_files", "read_file", "write_file", "finish")
]
START = [{"role": "user", "content": "Change the code."}]


def ask(url: str, messages: list[dict[str, Any]], sid: str = "s1", **body: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        headers={
            "X-Tierd-Role": "executor",
            "X-Tierd-Purpose": "execute",
            "X-Tierd-Task": "t1",
            "X-Tierd-Stream": sid,
            "X-Tierd-Round": "0",
        },
        json={"model": "gpt-5", "messages": messages, "tools": TOOLS, **body},
    )


def events(resp: httpx.Response) -> list[Any]:
    lines = [line[len("data: ") :] for line in resp.text.splitlines() if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_without_a_code_table_a_stream_lists_files_then_finishes() -> None:
    with running_simulator(FAST) as sim:
        first = ask(sim.url, START).json()
        [call] = first["choices"][0]["message"]["tool_calls"]
        assert first["choices"][0]["finish_reason"] == "tool_calls"
        assert first["choices"][0]["message"]["content"] is None
        assert (call["type"], call["function"]["name"]) == ("function", "list_files")
        answered = [
            *START,
            first["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "a.py\nb.py"},
        ]
        second = ask(sim.url, answered, sid="s7").json()
        [finish] = second["choices"][0]["message"]["tool_calls"]
        # The same conversation again is the same step: a resumed loop gets the same answer.
        again = ask(sim.url, answered, sid="s7").json()
    assert finish["function"]["name"] == "finish"
    assert "s7" in json.loads(finish["function"]["arguments"])["summary"]
    assert again["choices"][0]["message"]["tool_calls"] == [finish]
    assert finish["id"] != call["id"]


def test_a_streamed_tool_answer_is_in_openai_chunk_format() -> None:
    script = [
        {
            "say": "Two files.",
            "calls": [
                {"tool": "write_file", "args": {"path": "{stream}/a.py", "content": "x" * 100}},
                {"tool": "read_file", "args": {"path": "b.py"}},
            ],
        }
    ]
    scenario = {**FAST, "code": {"streams": {"s1": script}}}
    with running_simulator(scenario) as sim:
        resp = ask(sim.url, START, stream=True, stream_options={"include_usage": True})
        [record] = calls(sim.url)
    assert resp.headers["content-type"].startswith("text/event-stream")
    chunks = events(resp)
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == "Two files."
    pieces = [t for d in deltas for t in d.get("tool_calls", [])]
    openings = [p for p in pieces if "id" in p]
    assert [(p["index"], p["type"], p["function"]["name"]) for p in openings] == [
        (0, "function", "write_file"),
        (1, "function", "read_file"),
    ]
    arguments = ["", ""]
    for piece in pieces:
        arguments[piece["index"]] += piece["function"].get("arguments", "")
    assert json.loads(arguments[0]) == {"path": "s1/a.py", "content": "x" * 100}
    assert json.loads(arguments[1]) == {"path": "b.py"}
    # The arguments came in more than one piece, as a real stream sends them.
    assert sum(1 for p in pieces if p["index"] == 0 and p["function"].get("arguments")) > 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert finishes[-1] == "tool_calls"
    usage = chunks[-2]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        record["prompt_tokens"],
        record["completion_tokens"],
    )
    assert record["tool_calls"] == ["write_file", "read_file"]


def test_malformed_cuts_the_arguments_and_truncated_cuts_the_stream() -> None:
    failures = [
        {"kind": "malformed", "stream": "s1", "first": 1},
        {"kind": "truncated", "stream": "s2", "first": 1},
    ]
    with running_simulator({**FAST, "failures": failures}) as sim:
        bad = ask(sim.url, START).json()["choices"][0]["message"]["tool_calls"][0]
        cut = events(ask(sim.url, START, sid="s2", stream=True))
    with pytest.raises(ValueError):
        json.loads(bad["function"]["arguments"])
    assert "[DONE]" not in cut
    assert all(c["choices"][0]["finish_reason"] is None for c in cut)


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ({"streams": {"s1": [{"tool": "a", "calls": [{"tool": "b"}]}]}}, "not both"),
        ({"streams": {"s1": [{"args": {"x": 1}, "say": "hi"}]}}, "'args' needs 'tool'"),
        ({"streams": {"s1": [{}]}}, "needs 'tool', 'calls' or 'say'"),
        ({"streams": {"s1": [{"calls": []}]}}, "must not be empty"),
        ({"default": [{"tool": "x", "arguments": {}}]}, "Extra inputs"),
        ({"script": []}, "Extra inputs"),
    ],
)
def test_the_code_table_is_validated(code: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Scenario.model_validate({"code": code})


def test_the_shipped_code_scenario_calls_the_real_tools_rightly() -> None:
    scenario = load_scenario("code_fix")
    ids = [s.id for s in scenario.plan_streams()]
    assert ids == ["tests", "calc"] and set(scenario.code.streams) == set(ids)
    assert all(s.ownership for s in scenario.plan_streams())
    names = []
    for script in scenario.code.streams.values():
        for step in script:
            for call in step.tool_steps():
                # The executor's own argument models: a script the engine would refuse is wrong.
                REAL_TOOLS[call.tool].args.model_validate(call.args)
                names.append(call.tool)
    assert {"read_file", "write_file", "edit_file", "run_command", "finish"} <= set(names)


def test_watched_strings_are_found_in_request_bodies() -> None:
    planted = 'sk-planted "quoted"\nsecret'
    scenario = {**FAST, "watch": [planted, "never-sent"]}
    with running_simulator(scenario) as sim:
        ask(sim.url, [{"role": "user", "content": f"the key is {planted}"}])
        ask(sim.url, START)
        seen = stats(sim.url)
    assert seen["watched"] == {planted: 1, "never-sent": 0}
    assert [c["watched"] for c in seen["calls"]] == [[planted], []]


# --- the memo -----------------------------------------------------------------------------------


class NoLimit:
    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        yield

    def slot(self, task_id: str) -> Any:
        return self._slot()


async def nothing() -> None:
    return None


async def in_workflow(gateway: TaskGateway, thread: str) -> CallOutput:
    """One tool call through the gateway inside a LangGraph workflow, as the engine runs it."""

    @entrypoint(checkpointer=InMemorySaver())
    async def flow(_: str) -> dict[str, Any]:
        out = await gateway(
            "executor", "execute", START, key="exec:s1:r0:t0", stream_id="s1", tools=TOOLS
        )
        return {"text": out.text, "calls": [c.as_dict() for c in out.tool_calls]}

    value = await flow.ainvoke("go", {"configurable": {"thread_id": thread}})
    return CallOutput(value["text"], None, [ToolCall.from_dict(c) for c in value["calls"]])


async def test_the_memo_gives_a_resumed_task_the_same_tool_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-sim-memo")
    script = [{"say": "Let me look.", "calls": [{"tool": "read_file", "args": {"path": "a"}}]}]
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    try:
        with running_simulator({**FAST, "code": {"streams": {"s1": script}}}) as sim:
            tier = ModelTier(model=PREMIUM, api_base=sim.api_base, api_key_env=KEY_ENV, stream=True)

            def gateway() -> TaskGateway:
                models = ModelCaller({"executor": tier}, "t-memo")
                return TaskGateway(store, "t-memo", NoLimit(), models, nothing)

            first = await in_workflow(gateway(), "run-1")
            # A resumed task: a new gateway and workflow run over the same store.
            again = await in_workflow(gateway(), "run-2")
            asked = len(calls(sim.url))
        stored = await store.get_step("t-memo", "exec:s1:r0:t0")
    finally:
        await store.close()
    assert first.text == "Let me look."
    assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
        ("read_file", {"path": "a"})
    ]
    assert again == first
    assert asked == 1
    assert stored["tool_calls"] == [c.as_dict() for c in first.tool_calls]
