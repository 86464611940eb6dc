"""The client side of the MCP tasks extension (SEP-2663), for the tests.

The official MCP Python client (mcp 2.3) has the extension mechanism (ClientExtension, result
claims, `send_request` for extension verbs) but, like the server side, no tasks runtime: this
is the smallest one, written to the extension's spec. `TasksClient` declares
`io.modelcontextprotocol/tasks`, claims `resultType: "task"` on tools/call and resolves it by
polling tasks/get, fulfilling input requests through the client's own elicitation callback
(as the spec says a client must treat them) and answering them with tasks/update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ErrorData, RequestParams, Result
from pydantic import TypeAdapter

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = {"completed", "failed", "cancelled"}
_INPUT_REQUEST: TypeAdapter[types.InputRequest] = TypeAdapter(types.InputRequest)


class TaskHandle(Result):
    """CreateTaskResult: the handle a task-augmented call answers with."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class DetailedTask(Result):
    """tasks/get's answer."""

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    input_requests: dict[str, dict[str, Any]] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(RequestParams):
    task_id: str


class UpdateParams(RequestParams):
    task_id: str
    input_responses: dict[str, dict[str, Any]]


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


async def get_task(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), DetailedTask)


async def cancel_task(session: ClientSession, task_id: str) -> None:
    await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), types.EmptyResult)


async def answer_inputs(session: ClientSession, task: DetailedTask, seen: set[str]) -> int:
    """Fulfil the task's input requests not seen before through the client's callbacks, and
    send the replies with tasks/update; how many were answered."""
    replies: dict[str, dict[str, Any]] = {}
    for key, raw in (task.input_requests or {}).items():
        if key in seen:
            continue  # the spec: deduplicate input requests across polls
        seen.add(key)
        request = _INPUT_REQUEST.validate_python(raw)
        ctx = ClientRequestContext(session=session, request_id=key, meta=None)
        reply = await session.dispatch_input_request(ctx, request)
        if isinstance(reply, ErrorData):
            raise MCPError.from_error_data(reply)
        replies[key] = reply.model_dump(by_alias=True, mode="json", exclude_none=True)
    if replies:
        params = UpdateParams(task_id=task.task_id, input_responses=replies)
        await session.send_request(UpdateTask(params=params), types.EmptyResult)
    return len(replies)


async def follow_task(
    session: ClientSession, task_id: str, poll_s: float, rounds: int = 400
) -> DetailedTask:
    """Poll tasks/get until the task ends, answering its input requests on the way."""
    seen: set[str] = set()
    for _ in range(rounds):
        task = await get_task(session, task_id)
        if task.status in TERMINAL:
            return task
        if task.status == "input_required":
            await answer_inputs(session, task, seen)
        await anyio.sleep(poll_s)
    raise AssertionError(f"task {task_id} did not end")


class TasksClient(ClientExtension):
    """Declares the tasks extension and resolves task handles to the final tool result."""

    identifier = TASKS

    def __init__(self, poll_s: float = 0.2) -> None:
        # Faster than the server's suggested pollIntervalMs: tests wait for the simulator.
        self.poll_s = poll_s
        self.handles: list[TaskHandle] = []

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        self.handles.append(handle)
        task = await follow_task(ctx.session, handle.task_id, self.poll_s)
        if task.status == "completed":
            assert task.result is not None
            return CallToolResult.model_validate(task.result)
        error = task.error or {"code": -32603, "message": task.status}
        raise MCPError(code=error["code"], message=error["message"], data=error.get("data"))
