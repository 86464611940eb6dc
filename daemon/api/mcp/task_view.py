"""A tierd task as an MCP task (the `io.modelcontextprotocol/tasks` extension, SEP-2663).

The MCP task IS the tierd task: the same id, and every field read from tierd's store when it
is asked for, so it survives a daemon restart and agrees with every other client. Its status
follows tierd's state:

- queued, planning, running, reviewing, merging: `working`, the streams' states in the message;
- input_required (questions) and awaiting_approval: `input_required`, with the one elicitation
  form (`asking`) as its input request when the client can take elicitation;
- completed: `completed`, with submit_task's final result (the merged result, the diff);
- failed: `failed`, with tierd's error as the JSON-RPC error; canceled: `cancelled`.

Input requests are keyed so a key is never reused within a task, as the extension requires:
a key names what is asked (the ask's own key) and its asking: a reply that records nothing (a
decline, a dismissal, a refused form) makes the next poll ask again under a new key. That
count is the only thing kept here, in memory; it is salted with a per-process nonce, so keys
stay new across daemon restarts too.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from mcp_types import INTERNAL_ERROR

from daemon.api.mcp.asking import HumanAsk, ask_of
from daemon.api.mcp.outcome import final_result
from daemon.api.mcp.progress import describe, progress_of
from daemon.service.results import TaskDetail
from daemon.service.service import Service
from daemon.store.states import TaskState

#: The polling interval suggested to clients (pollIntervalMs).
POLL_INTERVAL_MS = 2000

_STATUS = {
    TaskState.input_required: "input_required",
    TaskState.awaiting_approval: "input_required",
    TaskState.completed: "completed",
    TaskState.failed: "failed",
    TaskState.canceled: "cancelled",
}


def status_of(state: str) -> str:
    return _STATUS.get(TaskState(state), "working")


def _iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class AskKeys:
    """The keys of a task's input requests: unique over the task's life, as SEP-2663 asks."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(3)
        self._declined: defaultdict[tuple[str, str], int] = defaultdict(int)

    def key(self, ask: HumanAsk) -> str:
        return f"{ask.key}-{self._nonce}{self._declined[(ask.task_id, ask.key)]}"

    def ask_again(self, ask: HumanAsk) -> None:
        """A reply to `ask` recorded nothing (declined, dismissed, refused): the next poll asks
        again, under a new key."""
        self._declined[(ask.task_id, ask.key)] += 1

    def forget(self, task_id: str) -> None:
        """A task that ended asks nothing more."""
        for scope in [s for s in self._declined if s[0] == task_id]:
            del self._declined[scope]


def _message(task: TaskDetail, status: str) -> str:
    if status == "working":
        return f"tierd: {describe(progress_of(task))}"
    if task.state == TaskState.input_required:
        return "the team needs answers to go on (answer the input request, or answer_questions)"
    if task.state == TaskState.awaiting_approval:
        return "the merged result awaits approval (answer the input request, or approve_result)"
    if status == "failed":
        return f"the task failed: {task.error or 'no reason recorded'}"
    return f"the task {task.state}"


def task_fields(task: TaskDetail) -> dict[str, Any]:
    """The `Task` fields (the handle a task-augmented call answers with)."""
    status = status_of(task.state)
    return {
        "taskId": task.id,
        "status": status,
        "statusMessage": _message(task, status),
        "createdAt": _iso(task.created_at),
        "lastUpdatedAt": _iso(task.updated_at),
        # tierd keeps its tasks until they are deleted by hand: no expiry.
        "ttlMs": None,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


async def detailed_task(
    service: Service, keys: AskKeys, task: TaskDetail, elicit: bool
) -> dict[str, Any]:
    """The `DetailedTask` tasks/get answers: the task, with what its status carries."""
    fields = task_fields(task)
    status = fields["status"]
    if status == "input_required":
        ask = await ask_of(service, task) if elicit else None
        # Without elicitation the client cannot answer here: an empty map, and the message
        # says which tools answer instead.
        fields["inputRequests"] = {} if ask is None else {keys.key(ask): _wire(ask)}
    elif status == "completed":
        result = await final_result(service, task)
        fields["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif status == "failed":
        fields["error"] = {
            "code": INTERNAL_ERROR,
            "message": task.error or "the task failed",
            "data": {"task_id": task.id, "state": task.state},
        }
    if status in ("completed", "failed", "cancelled"):
        keys.forget(task.id)
    return fields


def _wire(ask: HumanAsk) -> dict[str, Any]:
    return ask.request().model_dump(by_alias=True, mode="json", exclude_none=True)
