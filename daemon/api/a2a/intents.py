"""What an incoming A2A message asks for: a new tierd task, answers, or a decision.

A message without a task id (or context id) of a known task starts a task: its text is the
goal; a data part or the request's metadata may carry tierd's own fields under "tierd"
(context, options, repo, base, include_uncommitted). Its message id makes the submit safe to
retry (it is the idempotency key).

A message on a task that waits for the human continues it:
- questions (`input_required`): a data part {"answers": {question id: text}}, or text, which
  answers every open question;
- approval (`awaiting_approval`): a data part {"decision", "comment", "apply"}, or text:
  "approve" (or yes, ok, lgtm) approves; anything else rejects with the text as the comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from a2a.helpers.proto_helpers import get_data_parts, get_text_parts
from a2a.types.a2a_pb2 import Message, SendMessageRequest
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from daemon.service.params import AnswerParams, ApproveParams, SubmitParams
from daemon.service.results import TaskDetail

#: Replies that approve a result awaiting approval.
APPROVALS = frozenset({"approve", "approved", "yes", "ok", "okay", "lgtm", "accept"})
_KEY_OK = re.compile(r"^[!-~]{1,128}$")


class NotActionable(ValueError):
    """The message cannot act on the task in its state; the text says why."""


@dataclass
class Submit:
    params: SubmitParams


@dataclass
class Answer:
    params: AnswerParams


@dataclass
class Decide:
    params: ApproveParams


Intent = Submit | Answer | Decide


def text_of(message: Message) -> str:
    return "\n".join(t for t in get_text_parts(message.parts) if t.strip()).strip()


def _data(message: Message) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in get_data_parts(message.parts):
        if isinstance(item, dict):
            merged.update(item)
    return merged


def new_task(request: SendMessageRequest) -> Submit:
    """A submit from the message: text is the goal; "tierd" fields from metadata or data."""
    message = request.message
    extra: dict[str, Any] = {}
    for source in (
        MessageToDict(request.metadata),
        MessageToDict(message.metadata),
        _data(message),
    ):
        tierd = source.get("tierd")
        if isinstance(tierd, dict):
            extra.update(tierd)
    goal = text_of(message)
    if not goal:
        raise NotActionable("the message has no text: its text is the task's goal")
    fields = {k: extra[k] for k in ("context", "options", "repo", "base") if k in extra}
    if "include_uncommitted" in extra:
        fields["include_uncommitted"] = bool(extra["include_uncommitted"])
    if _KEY_OK.match(message.message_id):
        fields["idempotency_key"] = f"a2a:{message.message_id}"[:128]
    return Submit(SubmitParams.model_validate({"goal": goal, **fields}))


def follow_up(message: Message, task: TaskDetail) -> Answer | Decide:
    """Answers or a decision for a task that waits for the human; NotActionable otherwise."""
    data, text = _data(message), text_of(message)
    if task.state == "input_required":
        answers = data.get("answers")
        if not isinstance(answers, dict):
            open_ = [q.id for q in task.questions if q.answer is None]
            if not text or not open_:
                raise NotActionable("send the answers as text or {'answers': {id: text}}")
            answers = dict.fromkeys(open_, text)
        return Answer(
            AnswerParams(task_id=task.id, answers={str(k): str(v) for k, v in answers.items()})
        )
    if task.state == "awaiting_approval":
        if "decision" in data:
            fields = {k: data[k] for k in ("decision", "comment", "apply") if k in data}
            return Decide(ApproveParams.model_validate({"task_id": task.id, **fields}))
        if not text:
            raise NotActionable("reply 'approve', or say what to change")
        if text.strip(" .!").lower() in APPROVALS:
            return Decide(ApproveParams(task_id=task.id, decision="approve"))
        return Decide(ApproveParams(task_id=task.id, decision="reject", comment=text))
    raise NotActionable(
        f"task {task.id} is {task.state}: it takes a message only while it waits for "
        "answers (input_required) or approval"
    )
