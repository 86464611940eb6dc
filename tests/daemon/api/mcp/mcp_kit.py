"""Helpers for the MCP tests: an official MCP client on a daemon, and the scenarios they run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from support.daemon import DaemonProcess
from support.plans import stream

FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}
Q_A = "Which region should part a cover?"
#: a asks a question; b works on a while, so stream states change while a client waits.
QUESTION = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b")]},
    "streams": {"a": {"reply": "question", "question": Q_A}, "b": {"latency": 1.0}},
}
TWO = {"latency": FAST, "plan": {"streams": [stream("a"), stream("b")]}}
#: Models that answer after a minute: a task stays live while a test looks at it.
SLOW = {"latency": {"planner": 60.0, "orchestrator": 60.0, "executor": 60.0}}


@asynccontextmanager
async def mcp_client(
    d: DaemonProcess, token: str | None = None, headers: dict[str, str] | None = None, **kw: Any
) -> AsyncIterator[Client]:
    """The official MCP client on the daemon's /mcp, with its bearer token."""
    sent = {"Authorization": f"Bearer {token or d.token}", **(headers or {})}
    http = httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(60.0))
    async with http, Client(streamable_http_client(f"{d.url}/mcp", http_client=http), **kw) as c:
        yield c


def structured(result: CallToolResult) -> dict[str, Any]:
    """A tool's structured result; fails the test with the tool's text when it is an error."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def wait_settled(client: Client, task_id: str, rounds: int = 40) -> dict[str, Any]:
    """wait_task until the task settles (each call is bounded by the daemon)."""
    for _ in range(rounds):
        progress = structured(await client.call_tool("wait_task", {"task_id": task_id}))
        if progress["settled"]:
            return progress
    raise AssertionError(f"task {task_id} did not settle")


class User:
    """An elicitation callback playing the user: answers, approves, or declines."""

    def __init__(self, *, decline_first: bool = False, apply: str | None = None) -> None:
        self.asked: list[types.ElicitRequestFormParams] = []
        self.decline_first = decline_first
        self.apply = apply

    async def __call__(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(params)
        if self.decline_first and len(self.asked) == 1:
            return types.ElicitResult(action="decline")
        props = params.requested_schema["properties"]
        if "decision" in props:
            content: dict[str, Any] = {"decision": "approve"}
            if self.apply is not None:
                content["apply"] = self.apply
            return types.ElicitResult(action="accept", content=content)
        return types.ElicitResult(action="accept", content={qid: "EMEA" for qid in props})
