"""tierd tasks as A2A tasks: states, the status message, artifacts and history.

The A2A task's id is the tierd task's id, and so is its context id (tierd keeps no other
conversation id). Questions and approval are A2A's `input-required`: the status message says
what is asked, in text for a person and as a data part for a program.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from daemon.service.results import TaskDetail, TaskDiff, TaskSummary

#: tierd's states -> A2A's.
STATES: dict[str, int] = {
    "queued": TaskState.TASK_STATE_SUBMITTED,
    "planning": TaskState.TASK_STATE_WORKING,
    "running": TaskState.TASK_STATE_WORKING,
    "reviewing": TaskState.TASK_STATE_WORKING,
    "merging": TaskState.TASK_STATE_WORKING,
    "input_required": TaskState.TASK_STATE_INPUT_REQUIRED,
    "awaiting_approval": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "canceled": TaskState.TASK_STATE_CANCELED,
}
#: A2A's states -> the tierd states a ListTasks filter on it means.
TIERD_STATES: dict[int, list[str]] = {}
for _tierd, _a2a in STATES.items():
    TIERD_STATES.setdefault(_a2a, []).append(_tierd)

FINAL = frozenset(
    {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED}
)
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED})

RESULT_ARTIFACT = "result"
DIFF_ARTIFACT = "diff"


def _timestamp(at: float | None = None) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int((at if at is not None else time.time()) * 1e9))
    return stamp


def _message(task_id: str, role: int, text: str, data: Any = None, mid: str = "") -> Message:
    parts = [new_text_part(text)]
    if data is not None:
        parts.append(new_data_part(data))
    return Message(
        message_id=mid or str(uuid.uuid4()),
        task_id=task_id,
        context_id=task_id,
        role=role,  # type: ignore[arg-type]
        parts=parts,
    )


def status_message(task: TaskDetail) -> Message | None:
    """What the agent says with the status: the questions, the result to approve, the error."""
    if task.state == "input_required":
        open_ = [q for q in task.questions if q.answer is None]
        text = "tierd needs answers before it can go on:\n" + "\n".join(
            f"- [{q.id}] {q.question}" for q in open_
        )
        text += (
            '\nReply with text (it answers every question), or a data part {"answers": {id: text}}.'
        )
        data: dict[str, Any] = {"questions": [{"id": q.id, "question": q.question} for q in open_]}
        return _message(task.id, Role.ROLE_AGENT, text, data, f"{task.id}-questions")
    if task.state == "awaiting_approval":
        text = (
            "The merged result awaits approval (see the result artifact). Reply 'approve', "
            "or say what to change (the reply goes back as a rejection with your comment); "
            'or send a data part {"decision": "approve" | "reject", "comment": "..."}.'
        )
        awaiting = {"awaiting": "approval"}
        return _message(task.id, Role.ROLE_AGENT, text, awaiting, f"{task.id}-approval")
    if task.state == "failed" and task.error:
        return _message(task.id, Role.ROLE_AGENT, task.error, mid=f"{task.id}-failed")
    return None


def status_of(task: TaskDetail) -> TaskStatus:
    status = TaskStatus(state=STATES[task.state], timestamp=_timestamp(task.updated_at))  # type: ignore[arg-type]
    said = status_message(task)
    if said is not None:
        status.message.CopyFrom(said)
    return status


def artifacts_of(task: TaskDetail, diff: TaskDiff | None = None) -> list[Artifact]:
    """The merged result (and a code task's diff), once there is one."""
    found: list[Artifact] = []
    if task.result is not None:
        found.append(
            Artifact(
                artifact_id=RESULT_ARTIFACT,
                name="result",
                description="the merged result",
                parts=[new_text_part(task.result, media_type="text/markdown")],
            )
        )
    if diff is not None:
        found.append(
            Artifact(
                artifact_id=DIFF_ARTIFACT,
                name="diff",
                description=f"the change on branch {diff.branch} against {diff.base_commit}",
                parts=[new_text_part(diff.patch, media_type="text/x-diff")],
            )
        )
    return found


def history_of(task: TaskDetail | TaskSummary, length: int | None = None) -> list[Message]:
    """The goal, then each question and its answer: the conversation as tierd kept it."""
    said = [_message(task.id, Role.ROLE_USER, task.goal, mid=f"{task.id}-goal")]
    for q in getattr(task, "questions", []):
        said.append(_message(task.id, Role.ROLE_AGENT, q.question, mid=f"{q.id}-asked"))
        if q.answer is not None:
            said.append(_message(task.id, Role.ROLE_USER, q.answer, mid=f"{q.id}-answer"))
    if length is not None:
        said = said[-length:] if length > 0 else []
    return said


def task_of(
    task: TaskDetail, diff: TaskDiff | None = None, history_length: int | None = None
) -> Task:
    """The A2A task for a tierd task."""
    return Task(
        id=task.id,
        context_id=task.id,
        status=status_of(task),
        artifacts=artifacts_of(task, diff),
        history=history_of(task, history_length),
    )


def summary_task(task: TaskSummary, history_length: int | None = None) -> Task:
    """A listed task: its state and goal, without artifacts."""
    status = TaskStatus(state=STATES[task.state], timestamp=_timestamp(task.updated_at))  # type: ignore[arg-type]
    return Task(
        id=task.id,
        context_id=task.id,
        status=status,
        history=history_of(task, history_length),
    )
