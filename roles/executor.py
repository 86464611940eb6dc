"""The executor (cheap tier): carries out one stream and returns its output.

It sees only its own stream and the outputs of its dependencies, never the whole task, so its
prompt does not grow with the number of streams. Of the task's attachments it gets only its
stream's: images as image parts when its model sees them, else the planner's description of
them. It may answer with a question for the human or a proposed split of its own stream
instead of an output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from roles.calls import Caller
from roles.models.content import AttachmentContent
from roles.plan.schema import ExecutorReply, StreamSpec
from roles.prompts import PromptRules, executor_messages


async def execute(
    call: Caller,
    stream: StreamSpec,
    goal_line: str,
    dep_outputs: dict[str, str],
    rules: PromptRules,
    *,
    round: int,
    feedback: str | None,
    answers: dict[str, str] | None,
    may_split: bool,
    attempt: int = 0,
    attachments: Sequence[AttachmentContent] = (),
    show_images: bool = False,
    descriptions: Mapping[str, str] | None = None,
) -> ExecutorReply:
    messages = executor_messages(
        stream,
        goal_line,
        dep_outputs,
        rules,
        feedback,
        answers,
        may_split,
        attachments=attachments,
        show_images=show_images,
        descriptions=descriptions,
    )
    out = await call(
        "executor",
        "execute",
        messages,
        key=f"exec:{stream.id}:r{round}:a{attempt}",
        stream_id=stream.id,
        round=round,
        response_model=ExecutorReply,
    )
    reply = ExecutorReply.model_validate(out.data)
    if reply.kind == "output" and reply.output is None:
        reply.output = ""
    if reply.kind == "split" and not may_split:
        # Past the depth limit a split is not an option: treat it as a plain answer.
        reply = ExecutorReply(kind="output", output=reply.output or "")
    return reply
