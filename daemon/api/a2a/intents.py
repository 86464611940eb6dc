"""What an incoming A2A message asks for: a new tierd task, answers, or a decision.

A message without a task id (or context id) starts a task: its text is the goal; a data part
or the request's metadata may carry tierd's own fields under "tierd" (context, options, repo,
base, include_uncommitted). Tasks it names in `referenceTaskIds` come in as background: their
goals and results are added to the new task's context. Its message id makes the submit safe to
retry: the same message (same id, same content) sent again names the same task.

A message on a task that waits for the human continues it:
- questions (`input_required`): a data part {"answers": {question id: text}}, or text, which
  answers every open question;
- approval (`awaiting_approval`): a data part {"decision", "comment", "apply"}, or text:
  "approve" (or yes, ok, lgtm) approves; anything else rejects with the text as the comment.

tierd reads text and JSON: a part of another media type (a file, raw bytes) is refused with
A2A's ContentTypeNotSupportedError rather than silently dropped.
"""

from __future__ import annotations

import hashlib
import json
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
#: The media types tierd reads in a message (the card's input modes).
INPUT_MODES = ("text/plain", "application/json")
#: Characters of each referenced task's result carried into a new task's context.
REFERENCE_CHARS = 20_000
_KEY_OK = re.compile(r"^[!-~]{1,128}$")


class NotActionable(ValueError):
    """The message cannot act on the task in its state; the text says why."""


class TaskEnded(NotActionable):
    """The message names a task that has ended: it takes no more messages."""


class UnsupportedContent(NotActionable):
    """A part of the message is of a media type tierd does not read."""


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


def _whole(value: Any) -> Any:
    """JSON from a protobuf Struct with whole numbers as ints: a Struct keeps every number as
    a double, and tierd's strict fields (options.max_streams) take no 3.0 for 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _data(message: Message) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in get_data_parts(message.parts):
        if isinstance(item, dict):
            merged.update(_whole(item))
    return merged


def check_parts(message: Message) -> None:
    """UnsupportedContent unless every part is text (plain, markdown, ...) or JSON data."""
    for part in message.parts:
        kind = part.WhichOneof("content")
        media = part.media_type.split(";")[0].strip().lower()
        if kind == "data" and media in ("", "application/json"):
            continue
        if kind == "text" and (not media or media.startswith("text/") or media in INPUT_MODES):
            continue
        what = f"a {kind} part" + (f" of media type {media}" if media else "")
        raise UnsupportedContent(
            f"{what}: tierd reads text and JSON parts only ({', '.join(INPUT_MODES)})"
        )


def _idempotency_key(message: Message, fields: dict[str, Any]) -> str | None:
    """The submit's key: the message id with the content, so a resent message names its task
    again, while another message under a reused id (a client's mistake) starts its own."""
    if not _KEY_OK.match(message.message_id):
        return None
    content = json.dumps(fields, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{message.message_id}\n{content}".encode()).hexdigest()
    return f"a2a:{digest[:48]}"


def reference_context(references: list[TaskDetail]) -> str:
    """Background for a new task from earlier tasks it builds on: each one's goal and result."""
    said = []
    for task in references:
        result = task.result or f"(no result: the task is {task.state})"
        if len(result) > REFERENCE_CHARS:
            result = result[:REFERENCE_CHARS] + "\n[... cut]"
        said.append(f"Earlier task {task.id}.\nIts goal: {task.goal}\nIts result:\n{result}")
    return "\n\n".join(said)


def new_task(request: SendMessageRequest, references: list[TaskDetail] | None = None) -> Submit:
    """A submit from the message: text is the goal; "tierd" fields from metadata or data."""
    message = request.message
    extra: dict[str, Any] = {}
    for source in (
        _whole(MessageToDict(request.metadata)),
        _whole(MessageToDict(message.metadata)),
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
    if references:
        given = fields.get("context")
        background = reference_context(references)
        fields["context"] = f"{given}\n\n{background}" if isinstance(given, str) else background
    fields["goal"] = goal
    key = _idempotency_key(message, fields)
    if key is not None:
        fields["idempotency_key"] = key
    return Submit(SubmitParams.model_validate(fields))


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
    if task.state in ("completed", "failed", "canceled"):
        raise TaskEnded(
            f"task {task.id} is {task.state}: it takes no more messages. Send a message "
            f'without taskId and contextId to start a task, with referenceTaskIds ["{task.id}"] '
            "to build on this one"
        )
    raise NotActionable(
        f"task {task.id} is {task.state}: it takes a message only while it waits for "
        "answers (input_required) or approval"
    )
