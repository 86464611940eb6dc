"""MCP over streamable HTTP at /mcp, driven by the official MCP Python client.

A real daemon subprocess, models from tierd's simulator over real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_kit import Q_A, QUESTION, SLOW, TWO, mcp_client, structured, wait_settled
from support.daemon import DaemonProcess, write_config
from support.simulator import running_simulator, use_scenario

pytestmark = pytest.mark.slow

#: The bound on a tool call in this daemon's config (mcp.tool_wait_s).
BOUND_S = 3.0


class Env:
    def __init__(self, d: DaemonProcess, sim: Any) -> None:
        self.d, self.sim = d, sim

    def use(self, scenario: dict[str, Any]) -> None:
        use_scenario(self.sim, scenario)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home: Path = tmp_path_factory.mktemp("home")
    with running_simulator(TWO) as sim:
        write_config(home, sim.url, f"[mcp]\ntool_wait_s = {BOUND_S}\n")
        d = DaemonProcess(home).start()
        try:
            yield Env(d, sim)
        finally:
            d.stop()


async def test_initialize_lists_the_tools_with_schemas(env: Env) -> None:
    async with mcp_client(env.d) as client:
        assert client.server_info is not None and client.server_info.name == "tierd"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {
            "submit_task",
            "wait_task",
            "get_task",
            "list_tasks",
            "answer_questions",
            "approve_result",
            "cancel_task",
            "get_diff",
        }
        submit = tools["submit_task"].input_schema
        assert submit["required"] == ["goal"]
        assert {"context", "repo", "base", "include_uncommitted", "options"} <= set(
            submit["properties"]
        )
        assert tools["wait_task"].output_schema is not None
        assert "settled" in tools["wait_task"].output_schema["properties"]
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "tierd://tasks/{task_id}/result",
            "tierd://tasks/{task_id}/report",
        }


async def test_question_answer_approval_and_the_result(env: Env) -> None:
    env.use(QUESTION)
    async with mcp_client(env.d) as client:
        submitted = structured(
            await client.call_tool(
                "submit_task",
                {"goal": "Write a short market note", "options": {"approval": "required"}},
            )
        )
        task_id = submitted["task_id"]
        assert submitted["state"] == "queued" and "wait_task" in submitted["next_step"]

        asked = await wait_settled(client, task_id)
        assert asked["state"] == "input_required", asked
        (question,) = asked["open_questions"]
        assert question["question"] == Q_A and "answer_questions" in asked["next_step"]
        answered = structured(
            await client.call_tool(
                "answer_questions", {"task_id": task_id, "answers": {question["id"]: "EMEA"}}
            )
        )
        assert answered["answered"] == [question["id"]]

        pending = await wait_settled(client, task_id)
        assert pending["state"] == "awaiting_approval", pending
        assert pending["result"]
        decided = structured(
            await client.call_tool("approve_result", {"task_id": task_id, "decision": "approve"})
        )
        assert decided["task_id"] == task_id and decided["decision"] == "approve"

        done = await wait_settled(client, task_id)
        assert done["state"] == "completed" and done["open_questions"] == []
        assert done["cost_usd"] is not None
        # The result and the report as resources, as the service has them.
        detail = structured(await client.call_tool("get_task", {"task_id": task_id}))
        read = await client.read_resource(f"tierd://tasks/{task_id}/result")
        assert read.contents[0].text == detail["result"] == done["result"]  # type: ignore[union-attr]
        report = await client.read_resource(f"tierd://tasks/{task_id}/report")
        assert '"cost"' in report.contents[0].text  # type: ignore[union-attr]
        listed = structured(await client.call_tool("list_tasks", {"state": "completed"}))
        assert task_id in [t["id"] for t in listed["tasks"]]


async def test_wait_returns_at_the_bound_and_cancel_ends_the_task(env: Env) -> None:
    env.use(SLOW)
    async with mcp_client(env.d) as client:
        task_id = structured(await client.call_tool("submit_task", {"goal": "Slow work"}))[
            "task_id"
        ]
        # The models take a minute; the wait gives up at the daemon's bound, not later.
        progress = structured(
            await client.call_tool("wait_task", {"task_id": task_id, "timeout_s": 600})
        )
        assert progress["settled"] is False and progress["state"] in {"queued", "planning"}
        assert progress["waited_s"] <= BOUND_S + 1.0
        canceled = structured(await client.call_tool("cancel_task", {"task_id": task_id}))
        assert canceled == {"task_id": task_id, "state": "canceled"}
        after = structured(await client.call_tool("wait_task", {"task_id": task_id}))
        assert after["settled"] and after["state"] == "canceled"


async def test_progress_notifications_follow_the_streams(env: Env) -> None:
    env.use(QUESTION)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with mcp_client(env.d, mode="legacy") as client:
        task_id = structured(await client.call_tool("submit_task", {"goal": "A note"}))["task_id"]
        settled: dict[str, Any] | None = None
        for _ in range(40):
            result = await client.call_tool(
                "wait_task", {"task_id": task_id}, progress_callback=on_progress
            )
            settled = structured(result)
            if settled["settled"]:
                break
        assert settled is not None and settled["state"] == "input_required"
        assert seen, "no progress notification while the streams ran"
        assert any(m and "running" in m for _, _, m in seen), seen
        await client.call_tool("cancel_task", {"task_id": task_id})


async def test_errors_come_back_as_tool_errors_a_model_can_read(env: Env) -> None:
    async with mcp_client(env.d) as client:
        missing = await client.call_tool("get_task", {"task_id": "no-such-task"})
        assert missing.is_error
        assert "-32001" in missing.content[0].text  # type: ignore[union-attr]
        # A text task has no diff: a state error the model can read, not a crash.
        listed = structured(await client.call_tool("list_tasks", {"limit": 1}))
        if listed["tasks"]:
            text_task = listed["tasks"][0]["id"]
            no_diff = await client.call_tool("get_diff", {"task_id": text_task})
            assert no_diff.is_error
            assert "error -32" in no_diff.content[0].text  # type: ignore[union-attr]
        blank = await client.call_tool("submit_task", {"goal": ""})
        assert blank.is_error
        with pytest.raises(Exception, match="no task"):
            await client.read_resource("tierd://tasks/no-such-task/result")


def test_wrong_token_and_foreign_origin_are_refused(env: Env) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=env.d.url, timeout=10) as h:
        r = h.post("/mcp", json=body, headers={**accept, "Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = h.post("/mcp", json=body, headers=accept)
        assert r.status_code == 401
        r = h.post(
            "/mcp",
            json=body,
            headers={
                **accept,
                "Authorization": f"Bearer {env.d.token}",
                "Origin": "https://evil.example",
            },
        )
        assert r.status_code == 403
        r = h.post(
            "/mcp",
            json=body,
            headers={**accept, "Authorization": f"Bearer {env.d.token}", "Host": "evil.example"},
        )
        assert r.status_code == 421
        ok = h.post("/mcp", json=body, headers={**accept, "Authorization": f"Bearer {env.d.token}"})
        assert ok.status_code == 200, ok.text


async def test_the_official_client_fails_with_a_wrong_token(env: Env) -> None:
    listed = False
    with pytest.raises(BaseException) as caught:
        async with mcp_client(env.d, token="wrong") as client:
            await client.list_tools()
            listed = True
    assert not listed
    # The SDK reports the 401 as an error response of the server (in task groups).
    assert "MCPError" in repr(caught.value), repr(caught.value)
