"""The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) over tierd's tasks.

A client that declares the extension on a `tools/call` of submit_task gets a task handle
(`resultType: "task"`) at once instead of the plain answer; the handle's id is the tierd
task's id. Then:

- `tasks/get`: the task as it stands (`task_view`): working; input_required with the one
  elicitation form as its input request; completed with the merged result (and the diff);
  failed; cancelled;
- `tasks/update`: the replies to those input requests, recorded as task/answer and
  task/approve record them (`asking.record`); a decline leaves the task waiting and the next
  poll asks again under a new key;
- `tasks/cancel`: cancels the tierd task.

The `mcp` package (2.3) ships the extension mechanism (Extension, MethodBinding, the
tools/call interceptor) and leaves the tasks runtime to the server: this module is that
runtime, kept to the smallest adapter over the service. It holds no task state: every answer
reads tierd's store, so a task outlives the connection and the daemon. The extension is
served on the 2026-07-28 wire only, where it is defined; a client on an older wire (or one
not declaring it) gets the plain tools, and -32021 from tasks/*.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequestParams,
    ElicitResult,
    GetTaskRequestParams,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, ValidationError

from daemon.api.mcp.asking import can_elicit, current_ask, record
from daemon.api.mcp.task_view import AskKeys, detailed_task, task_fields
from daemon.service.errors import InvalidParams, InvalidState, ServiceError, TaskNotFound
from daemon.service.params import TaskIdParams
from daemon.service.results import TaskDetail
from daemon.service.service import Service

log = logging.getLogger("tierd.mcp")

TASKS = "io.modelcontextprotocol/tasks"
#: The tool whose calls become tasks: the one whose work takes minutes.
TASK_TOOLS = frozenset({"submit_task"})
_WIRE = frozenset(MODERN_PROTOCOL_VERSIONS)


class UpdateTaskParams(RequestParams):
    task_id: str
    input_responses: dict[str, dict[str, Any]] = Field(default_factory=dict)


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return (
        ctx.protocol_version in _WIRE
        and capabilities is not None
        and TASKS in (capabilities.extensions or {})
    )


def _protocol_error(exc: ServiceError) -> MCPError:
    """A service error as the JSON-RPC error the extension names for it."""
    if isinstance(exc, TaskNotFound | InvalidParams):
        return MCPError(code=INVALID_PARAMS, message=exc.message)
    return MCPError(code=INTERNAL_ERROR, message=exc.message)


class TierdTasks(Extension):
    """tierd's tasks as MCP tasks: submit_task answers with a handle; tasks/* follow it."""

    identifier = TASKS

    def __init__(self, service: Service) -> None:
        self._service = service
        self._keys = AskKeys()

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", GetTaskRequestParams, self._get, _WIRE),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, _WIRE),
            MethodBinding("tasks/cancel", CancelTaskRequestParams, self._cancel, _WIRE),
        ]

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        result = await call_next(ctx)
        if params.name not in TASK_TOOLS or not _declared(ctx):
            return result
        if not isinstance(result, CallToolResult) or result.is_error:
            return result  # refused arguments: no task was created, the error stands
        task_id = (result.structured_content or {}).get("task_id")
        # submit has stored the task before answering: tasks/get resolves it from now on.
        task = await self._task(str(task_id))
        return {"resultType": "task", **task_fields(task)}

    async def _task(self, task_id: str) -> TaskDetail:
        """The task with exactly this id (an MCP task id is whole: no prefixes, no @last)."""
        try:
            task = await self._service.get(TaskIdParams(task_id=task_id))
        except ValidationError as exc:
            raise MCPError(code=INVALID_PARAMS, message=f"not a task id: {task_id!r}") from exc
        except ServiceError as exc:
            raise _protocol_error(exc) from exc
        if task.id != task_id:
            raise MCPError(code=INVALID_PARAMS, message=f"no task {task_id}")
        return task

    async def _get(
        self, ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams
    ) -> dict[str, Any]:
        require_client_extension(ctx, TASKS)
        task = await self._task(params.task_id)
        elicit = can_elicit(ctx.session.client_capabilities)
        return await detailed_task(self._service, self._keys, task, elicit)

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> dict[str, Any]:
        require_client_extension(ctx, TASKS)
        task = await self._task(params.task_id)
        for key, raw in params.input_responses.items():
            await self._reply(task.id, key, raw)
        return {}

    async def _reply(self, task_id: str, key: str, raw: dict[str, Any]) -> None:
        """Record one reply if it answers what the task asks now; ignore it otherwise (a
        stale or unknown key, as the extension allows)."""
        try:
            reply = ElicitResult.model_validate(raw)
        except ValidationError as exc:
            raise MCPError(code=INVALID_PARAMS, message=f"{key}: not an elicitation reply") from exc
        try:
            ask = await current_ask(self._service, task_id)
            if ask is None or self._keys.key(ask) != key:
                log.info("task %s: ignored a reply to %s (not asked now)", task_id, key)
                return
            try:
                recorded = await record(self._service, ask, reply)
            except InvalidParams as exc:
                self._keys.ask_again(ask)
                raise MCPError(code=INVALID_PARAMS, message=f"{key}: {exc.message}") from exc
        except ServiceError as exc:
            raise _protocol_error(exc) from exc
        if not recorded.taken:
            # The client has replied to this key: what is still asked needs a new one.
            self._keys.ask_again(ask)
        log.info("task %s: %s", task_id, recorded.note)

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams
    ) -> dict[str, Any]:
        require_client_extension(ctx, TASKS)
        task = await self._task(params.task_id)
        try:
            await self._service.cancel(TaskIdParams(task_id=task.id))
        except InvalidState:
            pass  # it ended first: cancellation is cooperative, the ack stands
        except ServiceError as exc:
            raise _protocol_error(exc) from exc
        return {}
