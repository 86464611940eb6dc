"""What submit_task answers: at once, the task's id; once the task ends, its outcome.

A plain `tools/call` of submit_task answers at once with the id. A task-augmented one (the
tasks extension) answers with a task handle, and the task's final result is the result that
call would have had if it had waited: the same tool's result, so it fits submit_task's output
schema, now with the merged result and, for a code task, the diff.
"""

from __future__ import annotations

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from daemon.service.errors import ServiceError
from daemon.service.params import TaskIdParams
from daemon.service.results import TaskDetail, TaskDiff
from daemon.service.service import Service


class SubmitAnswer(BaseModel):
    """A submitted task: its id at once, before any work; its outcome once it has one."""

    task_id: str
    state: str
    duplicate: bool = Field(description="true: the idempotency key already named this task")
    next_step: str
    result: str | None = Field(
        default=None, description="the merged result, once the task completed"
    )
    diff: TaskDiff | None = Field(
        default=None, description="a code task's change against its base, once merged"
    )
    error: str | None = Field(default=None, description="why the task failed, if it did")


def submitted(task_id: str, state: str, duplicate: bool) -> SubmitAnswer:
    return SubmitAnswer(
        task_id=task_id,
        state=state,
        duplicate=duplicate,
        next_step=f"call wait_task with task_id {task_id!r} to follow it",
    )


async def _diff(service: Service, task: TaskDetail) -> TaskDiff | None:
    if task.code is None:
        return None
    try:
        return await service.diff(TaskIdParams(task_id=task.id))
    except ServiceError:
        return None  # e.g. the result branch is gone; the result text still stands


async def final_result(service: Service, task: TaskDetail) -> CallToolResult:
    """The tool result of a completed task: the merged result as text (and the diff as a
    second text block for a code task), and the same as structured content."""
    diff = await _diff(service, task)
    answer = SubmitAnswer(
        task_id=task.id,
        state=task.state,
        duplicate=False,
        next_step="done: the merged result is in `result`",
        result=task.result,
        diff=diff,
        error=task.error,
    )
    content = [TextContent(type="text", text=task.result or "")]
    if diff is not None:
        content.append(TextContent(type="text", text=diff.patch))
    return CallToolResult(
        content=list(content), structured_content=answer.model_dump(mode="json"), is_error=False
    )
