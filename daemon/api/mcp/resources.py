"""Task results and reports as MCP resources, for clients that attach resources to a chat.

`tierd://tasks/{task_id}/result` is the merged result (Markdown, as the orchestrator wrote it);
`tierd://tasks/{task_id}/report` is the report (JSON: the plan, each stream's verdict, tokens,
dollars and time). Both are read from the service at the moment they are asked for.
"""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from daemon.service.errors import ServiceError, TaskNotFound
from daemon.service.params import TaskIdParams
from daemon.service.results import TaskDetail
from daemon.service.service import Service

RESULT_URI = "tierd://tasks/{task_id}/result"
REPORT_URI = "tierd://tasks/{task_id}/report"


async def _task(service: Service, task_id: str) -> TaskDetail:
    try:
        return await service.get(TaskIdParams(task_id=task_id))
    except TaskNotFound as exc:
        raise ResourceNotFoundError(exc.message) from exc
    except ServiceError as exc:
        raise ResourceError(exc.message) from exc


def register_resources(server: MCPServer, service: Service) -> None:
    """Add the result and report templates to `server`."""

    @server.resource(
        RESULT_URI,
        name="task-result",
        title="tierd task result",
        description="The merged result of a tierd task (empty until it has one).",
        mime_type="text/markdown",
    )
    async def task_result(task_id: str) -> str:
        task = await _task(service, task_id)
        if task.result is None:
            raise ResourceError(f"task {task_id} has no result yet (state {task.state})")
        return task.result

    @server.resource(
        REPORT_URI,
        name="task-report",
        title="tierd task report",
        description="The report of a tierd task: plan, verdicts, tokens, dollars, time.",
        mime_type="application/json",
    )
    async def task_report(task_id: str) -> str:
        task = await _task(service, task_id)
        if task.report is None:
            raise ResourceError(f"task {task_id} has no report yet (state {task.state})")
        return json.dumps(task.report, indent=2)
