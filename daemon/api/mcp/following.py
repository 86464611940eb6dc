"""wait_task: follow a task for at most the bound, and ask the user when it needs them.

A call waits until the task settles or the bound (`mcp.tool_wait_s`, or less) is reached,
then answers with the progress (`progress`). When the task waits for the human and the client
declared elicitation, tierd asks the user itself, once, with the one form `asking` builds:

- on the 2026-07-28 wire, as a multi-round-trip request: the call answers an
  `InputRequiredResult` carrying the form, and the client's retry carries the user's reply
  (no connection is held while the user reads);
- on older wires, as an `elicitation/create` request sent while the call is open, given what
  is left of the bound: the whole call, the user's reading included, stays within the bound.
  When less than half the bound is left, the call answers instead, and the next wait_task asks.

A reply is recorded exactly as answer_questions or approve_result record it; a decline, a
dismissal or no reply in time records nothing: the task keeps waiting, and `human_reply` says
what happened.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import REQUEST_TIMEOUT, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from daemon.api.mcp.asking import HumanAsk, Recorded, can_elicit, current_ask, record
from daemon.api.mcp.progress import (
    HUMAN_STATES,
    Deadline,
    OnChange,
    Progress,
    left_approval,
    wait_until_settled,
)
from daemon.service.errors import InvalidParams
from daemon.service.service import Service
from daemon.service.task_spend import spent_usd
from daemon.store.feed import EventFeed

#: The first wire whose tools/call carries elicitation inside an InputRequiredResult.
INPUT_REQUIRED_WIRE = "2026-07-28"
ASK_AGAIN = (
    "the task needs the user and too little of this call's bound was left to ask them: call "
    "wait_task again and it will ask them"
)


async def follow(
    service: Service,
    feed: EventFeed,
    ctx: Context[Any, Any],
    task_id: str,
    deadline: Deadline,
    notify: OnChange | None = None,
) -> Progress | InputRequiredResult:
    """wait_task's whole call, within `deadline`."""
    if ctx.input_responses:  # the retry carrying the user's reply to this call's form
        recorded = await _take_reply(service, task_id, ctx.input_responses)
        return await _after_reply(service, feed, task_id, deadline, recorded, notify)
    progress = await wait_until_settled(service, feed, task_id, deadline.remaining(), notify)
    if progress.state not in HUMAN_STATES or not can_elicit(ctx.client_capabilities):
        return await _answer(service, progress, deadline)
    ask = await current_ask(service, progress.task_id)
    if ask is None:
        return await _answer(service, progress, deadline)
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, INPUT_REQUIRED_WIRE):
        return InputRequiredResult(input_requests={ask.key: ask.request()})
    if not ctx.session.can_send_request:
        return await _answer(service, progress, deadline)
    if deadline.remaining() < deadline.bound_s / 2:
        return await _answer(service, progress, deadline, ASK_AGAIN)
    recorded = await _elicit(service, ctx, ask, deadline.remaining())
    return await _after_reply(service, feed, progress.task_id, deadline, recorded, notify)


async def _take_reply(service: Service, task_id: str, responses: dict[str, Any]) -> Recorded:
    ask = await current_ask(service, task_id)
    for key, reply in responses.items():
        if ask is not None and key == ask.key and isinstance(reply, ElicitResult):
            return await _record(service, ask, reply)
    return Recorded(False, "nothing recorded: the task no longer asks what the user answered")


async def _elicit(
    service: Service, ctx: Context[Any, Any], ask: HumanAsk, timeout_s: float
) -> Recorded:
    """Ask the user over the call's own stream; no reply within `timeout_s` records nothing."""
    try:
        reply = await ctx.session.send_request(
            ask.request(),
            ElicitResult,
            request_read_timeout_seconds=timeout_s,
            metadata=ServerMessageMetadata(related_request_id=ctx.request_context.request_id),
        )
    except MCPError as exc:
        if exc.code == REQUEST_TIMEOUT:
            return Recorded(
                False,
                f"the user gave no answer within {timeout_s:.0f} s: nothing recorded, the task "
                "still waits; call wait_task again to ask again",
            )
        return Recorded(False, f"the user could not be asked ({exc.error.message})")
    return await _record(service, ask, reply)


async def _record(service: Service, ask: HumanAsk, reply: ElicitResult) -> Recorded:
    try:
        return await record(service, ask, reply)
    except InvalidParams as exc:
        return Recorded(False, f"nothing recorded, the reply was refused: {exc.message}")


async def _after_reply(
    service: Service,
    feed: EventFeed,
    task_id: str,
    deadline: Deadline,
    recorded: Recorded,
    notify: OnChange | None,
) -> Progress:
    """The progress after a reply: once taken, the task leaves the state it waited in (an
    approval is acted on a moment later), then the wait goes on for what is left."""
    progress = await wait_until_settled(service, feed, task_id, 0)
    if recorded.taken:
        progress = await wait_until_settled(
            service, feed, task_id, deadline.remaining(), notify, until=left_approval
        )
        if not progress.settled:
            progress = await wait_until_settled(
                service, feed, task_id, deadline.remaining(), notify
            )
    return await _answer(service, progress, deadline, recorded.note)


async def _answer(
    service: Service, progress: Progress, deadline: Deadline, human_reply: str | None = None
) -> Progress:
    """The call's answer: the progress, the dollars spent so far, the whole call's wait."""
    cost = progress.cost_usd
    if cost is None:
        cost = await spent_usd(service.store, progress.task_id)
    return progress.model_copy(
        update={
            "cost_usd": cost,
            "waited_s": round(deadline.elapsed(), 3),
            "human_reply": human_reply,
        }
    )
