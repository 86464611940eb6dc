"""`call_model`: the one function that calls a model, and the names the model layer offers.

Every model call in tierd goes through here, so this is where timeouts, retries, fallbacks,
structured output, usage and cost come together: `transport` gets one answer from a tier
(retries, fallbacks, the deadline), `structured` parses it, and an answer that does not parse
is sent back to the model with the problem, a bounded number of times.

Each attempt (a retry, a fallback model, a repair request) produces a `UsageRecord`, handed to
`on_record` as soon as it is known: failed attempts cost time and sometimes money, and the
report shows them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from roles.models.costs import premium_cost
from roles.models.errors import ModelCallError, ModelConfigError, ModelError, ModelOutputError
from roles.models.structured import extract_json, parse
from roles.models.tier import ModelTier
from roles.models.toolcalls import ToolCall
from roles.models.transport import LOGGED_ERROR_CHARS, Attempts, complete, one_line
from roles.models.usage import OnRecord, UsageRecord, emit

__all__ = [
    "ModelCallError",
    "ModelConfigError",
    "ModelError",
    "ModelOutputError",
    "ModelResult",
    "ModelTier",
    "OnRecord",
    "ToolCall",
    "UsageRecord",
    "call_model",
    "extract_json",
    "premium_cost",
]

log = logging.getLogger("tierd.models")

#: Longest piece of an invalid answer quoted back to the model in a repair request.
REPAIR_QUOTE_CHARS = 4000


@dataclass
class ModelResult:
    text: str
    parsed: BaseModel | None
    #: The record of the attempt that produced `text`.
    record: UsageRecord
    #: The tool calls of the answer, for a call with `tools` (in the model's order).
    tool_calls: list[ToolCall] = field(default_factory=list)


def _repair_request(
    messages: list[dict[str, Any]], text: str, problem: str, response_model: type[BaseModel]
) -> list[dict[str, Any]]:
    """The conversation again, with the unusable answer and what is wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": text[:REPAIR_QUOTE_CHARS]},
        {
            "role": "user",
            "content": f"Your answer could not be used: {problem[:1500]}\nAnswer again "
            f"with only one JSON object of type {response_model.__name__} "
            "that fixes this: no prose, no code fences.",
        },
    ]


def _headers(
    role: str, purpose: str, task_id: str, stream_id: str | None, round: int, step: str | None
) -> dict[str, str]:
    """Who asks, sent with every request (the simulator answers by them)."""
    headers = {
        "X-Tierd-Role": role,
        "X-Tierd-Purpose": purpose,
        "X-Tierd-Task": task_id,
        "X-Tierd-Round": str(round),
    }
    if stream_id:
        headers["X-Tierd-Stream"] = stream_id
    if step:
        headers["X-Tierd-Step"] = step
    return headers


async def call_model(
    tier: ModelTier,
    messages: list[dict[str, Any]],
    *,
    role: str,
    purpose: str,
    task_id: str,
    stream_id: str | None = None,
    round: int = 0,
    response_model: type[BaseModel] | None = None,
    on_record: OnRecord | None = None,
    repairs: int | None = None,
    step: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> ModelResult:
    """Ask `tier` for an answer to `messages`; parse it as `response_model` if given.

    Retries (exponential backoff, Retry-After honoured), then fallback models, then, for an
    answer that does not parse, up to `repairs` (default: the tier's `max_repairs`) requests
    quoting the error back to the model.
    Retried: timeouts, refused or reset connections, 408/409/429/5xx, a body that is not
    JSON, an empty answer. Every wait is bounded (see `transport`).
    Raises ModelCallError when no model answered, ModelOutputError when no answer parsed,
    ModelConfigError when the tier's key variable is not set: all `ModelError`s naming the
    role, the model and the cause. Cancelling the awaiting task closes the in-flight request.
    `step` (the call's memo key) is sent as `X-Tierd-Step`, so a server's log (the
    simulator's) can tell which step each request was for.
    `tools` (OpenAI function schemas) lets the model answer with tool calls (`tool_calls`)
    and/or text; an answer with neither is empty and retried. Not with `response_model`.
    """
    if tools and response_model is not None:
        raise ValueError(f"{role}/{purpose}: a call takes tools or a response_model, not both")
    headers = _headers(role, purpose, task_id, stream_id, round, step)
    c = Attempts(tier, role, purpose, task_id, stream_id, round, on_record, headers)
    conversation = list(messages)
    repairs = tier.max_repairs if repairs is None else repairs
    for repair in range(repairs + 1):
        reply, record = await complete(c, conversation, response_model, tools)
        text = reply.text
        if response_model is None:
            await emit(on_record, record)
            return ModelResult(text, None, record, reply.tool_calls)
        try:
            parsed = parse(text, response_model)
        except ValueError as exc:
            problem = str(exc)
            name = response_model.__name__
            record.outcome, record.error = "error", f"invalid {name}: {problem[:500]}"
            await emit(on_record, record)
            if repair == repairs:
                raise ModelOutputError(
                    f"{role}/{purpose}: the answer of {record.model} never parsed as {name} "
                    f"after {repairs} repair request(s): {problem[:500]}",
                    text,
                    role=role,
                    model=record.model,
                ) from exc
            log.warning(
                "model answer unusable: role=%s purpose=%s task=%s stream=%s model=%s "
                "attempt=%d: not a valid %s (%s); asking again",
                role,
                purpose,
                task_id,
                stream_id or "-",
                record.model,
                record.attempts,
                name,
                one_line(problem, LOGGED_ERROR_CHARS),
            )
            conversation = _repair_request(messages, text, problem, response_model)
            continue
        await emit(on_record, record)
        return ModelResult(text, parsed, record)
    raise AssertionError("unreachable")  # pragma: no cover
