"""What tierd asks the human through MCP elicitation, and how a reply is recorded.

A task waits for the human in one of two ways: its streams asked questions (input_required),
or its merged result awaits approval (awaiting_approval). Either becomes ONE elicitation form:
the open questions batched, a text field each; or the approval, the result's summary in the
message, a decision, a comment and, for a code task, what approval does with the change. An
accepted form is recorded through the service exactly as task/answer or task/approve record
it; a declined or dismissed one records nothing, so the task keeps waiting and nothing is lost.

Each ask has a key naming what it asks: its kind and a digest of the open questions' ids, or
of the revision of the result awaiting approval. A reply counts only for the ask it was given
for, so an approval given for one revision of a result is never applied to a later one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from mcp_types import ClientCapabilities, ElicitRequest, ElicitRequestFormParams, ElicitResult
from pydantic import ValidationError

from daemon.service.errors import InvalidParams, InvalidState, ServiceError
from daemon.service.params import AnswerParams, ApproveParams, TaskIdParams
from daemon.service.results import TaskDetail, TaskDiff
from daemon.service.service import Service
from daemon.store.states import TaskState

#: The longest excerpt of a result (and of a goal) an approval's message carries; the whole
#: result is the resource tierd://tasks/{id}/result.
RESULT_EXCERPT = 4000
GOAL_EXCERPT = 300
#: At most this many changed files are listed in a code task's approval.
FILES_LISTED = 30

Kind = Literal["questions", "approval"]


@dataclass(frozen=True)
class HumanAsk:
    """One elicitation form for what a task waits for."""

    task_id: str
    kind: Kind
    digest: str
    message: str
    schema: dict[str, Any]
    question_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Names what is asked: the same questions, or the same result, give the same key."""
        return f"{self.kind}-{self.digest}"

    def request(self) -> ElicitRequest:
        params = ElicitRequestFormParams(message=self.message, requested_schema=self.schema)
        return ElicitRequest(params=params)


def can_elicit(capabilities: ClientCapabilities | None) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` counts)."""
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def _heading(task: TaskDetail) -> str:
    return f"tierd task {task.id}: {_excerpt(task.goal, GOAL_EXCERPT)}"


def _questions(task: TaskDetail) -> HumanAsk | None:
    open_questions = [q for q in task.questions if q.answer is None]
    if not open_questions:
        return None
    titles = {s.id: s.title for s in task.streams}
    properties: dict[str, Any] = {}
    for q in open_questions:
        stream = titles.get(q.stream_id or "")
        properties[q.id] = {
            "type": "string",
            "title": q.question,
            "description": f"asked by the stream {stream!r}" if stream else "asked by the team",
            "minLength": 1,
        }
    ids = tuple(q.id for q in open_questions)
    count = f"{len(ids)} question{'s' if len(ids) > 1 else ''}"
    message = f"{_heading(task)}\n\nThe team needs answers to go on ({count})."
    schema = {"type": "object", "properties": properties, "required": list(ids)}
    return HumanAsk(task.id, "questions", _digest(*sorted(ids)), message, schema, ids)


def _change(diff: TaskDiff | None) -> str:
    if diff is None:
        return ""
    lines = [f"\n\nThe change ({len(diff.files)} files, on branch {diff.branch}):"]
    for f in diff.files[:FILES_LISTED]:
        counts = "binary" if f.insertions is None else f"+{f.insertions} -{f.deletions}"
        lines.append(f"  {f.path} ({counts})")
    if len(diff.files) > FILES_LISTED:
        lines.append(f"  … and {len(diff.files) - FILES_LISTED} more (get_diff shows them all)")
    return "\n".join(lines)


_DECISION = {
    "type": "string",
    "title": "Decision",
    "oneOf": [
        {"const": "approve", "title": "Approve: the task completes with this result"},
        {"const": "reject", "title": "Reject: send it back for a revision (say why below)"},
    ],
}
_COMMENT = {"type": "string", "title": "Comment", "description": "with reject: what to change"}
_APPLY = {
    "type": "string",
    "title": "With approve: what to do with the change",
    "oneOf": [
        {"const": "branch", "title": "Leave it on its branch"},
        {"const": "merge", "title": "Merge it into my current branch"},
        {"const": "patch", "title": "Write a patch file"},
    ],
    "default": "branch",
}


def _approval(task: TaskDetail, diff: TaskDiff | None) -> HumanAsk:
    result = _excerpt(task.result or "(no text)", RESULT_EXCERPT)
    message = (
        f"{_heading(task)}\n\nThe merged result awaits your approval.\n\n{result}"
        f"{_change(diff)}\n\nThe whole result: tierd://tasks/{task.id}/result"
    )
    properties: dict[str, Any] = {"decision": _DECISION, "comment": _COMMENT}
    if task.code is not None:
        properties["apply"] = _APPLY
    schema = {"type": "object", "properties": properties, "required": ["decision"]}
    # A revision of the result enters awaiting_approval anew: updated_at tells them apart.
    digest = _digest(task.updated_at, task.result)
    return HumanAsk(task.id, "approval", digest, message, schema)


async def ask_of(service: Service, task: TaskDetail) -> HumanAsk | None:
    """The form for what `task` waits for from the human; None when it waits for nothing."""
    if task.state == TaskState.input_required:
        return _questions(task)
    if task.state != TaskState.awaiting_approval:
        return None
    diff = None
    if task.code is not None:
        try:
            diff = await service.diff(TaskIdParams(task_id=task.id))
        except ServiceError:
            diff = None  # the approval is still asked; get_diff says what went wrong
    return _approval(task, diff)


async def current_ask(service: Service, task_id: str) -> HumanAsk | None:
    return await ask_of(service, await service.get(TaskIdParams(task_id=task_id)))


_NOT_ACCEPTED = {
    "decline": "the user declined to answer: nothing recorded, the task still waits",
    "cancel": "the user dismissed the form: nothing recorded, the task still waits",
}


@dataclass(frozen=True)
class Recorded:
    """What came of a reply: whether tierd took it, and a sentence saying so for the model."""

    taken: bool
    note: str


async def record(service: Service, ask: HumanAsk, reply: ElicitResult) -> Recorded:
    """Record an accepted reply as task/answer or task/approve would. InvalidParams when its
    content cannot be taken (the task still waits); a reply the task moved on from (answered
    meanwhile, or a merge git refused) records nothing and says so."""
    if reply.action != "accept":
        return Recorded(False, _NOT_ACCEPTED[reply.action])
    content = reply.content or {}
    try:
        if ask.kind == "questions":
            return await _answer(service, ask, content)
        return await _decide(service, ask, content)
    except InvalidState as exc:
        return Recorded(False, f"nothing recorded: {exc.message}")


async def _answer(service: Service, ask: HumanAsk, content: dict[str, Any]) -> Recorded:
    answers = {
        qid: str(value).strip()
        for qid, value in content.items()
        if qid in ask.question_ids and value is not None and str(value).strip()
    }
    if not answers:
        return Recorded(False, "the user answered nothing: nothing recorded, the task still waits")
    answered = await service.answer(AnswerParams(task_id=ask.task_id, answers=answers))
    return Recorded(True, f"the user answered {', '.join(answered.answered)}")


async def _decide(service: Service, ask: HumanAsk, content: dict[str, Any]) -> Recorded:
    current = await current_ask(service, ask.task_id)
    if current is None or current.key != ask.key:
        return Recorded(
            False, "nothing recorded: the result the user saw no longer awaits approval"
        )
    fields = {k: content.get(k) for k in ("decision", "comment", "apply")}
    if fields["decision"] != "approve":
        fields["apply"] = None  # only an approval applies a result; a form may send its default
    try:
        params = ApproveParams.model_validate(
            {"task_id": ask.task_id, **{k: v for k, v in fields.items() if v not in (None, "")}}
        )
    except ValidationError as exc:
        raise InvalidParams(f"the approval form: {exc.errors()[0]['msg']}", {}) from exc
    decided = await service.approve(params)
    applied = f" (applied: {decided.applied.how})" if decided.applied else ""
    return Recorded(True, f"the user chose {decided.decision}{applied}")
