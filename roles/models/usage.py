"""The record of one attempt at a model call: `UsageRecord`, and how it is handed on.

`UsageRecord` is the one type for a model call's facts: the model layer makes one per attempt
(a retry, a fallback model, a repair request), the engine stores it (the `usage` table holds
the same fields) and the report reads it back. Failed attempts cost time and sometimes money,
so they are records too.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["OnRecord", "TokenCounts", "UsageRecord", "emit"]

log = logging.getLogger("tierd.models")


@dataclass
class UsageRecord:
    """One attempt at a model call: who asked, which model answered, tokens, cost, time."""

    task_id: str
    stream_id: str | None
    role: str
    purpose: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens the provider read from its prompt cache (part of prompt_tokens, priced
    #: at the cached rate: `roles.models.costs.cost_of`).
    cached_tokens: int = 0
    #: Dollars by litellm's price table; None when the model's price is unknown (never $0).
    cost_usd: float | None = 0.0
    latency_s: float = 0.0
    outcome: str = "ok"  # "ok" | "error"
    #: Which attempt of this call this was (1-based, across retries, fallbacks and repairs).
    attempts: int = 1
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    round: int = 0


@dataclass(frozen=True)
class TokenCounts:
    """The tokens one answer's usage reports, as litellm hands it on.

    `cached` is OpenAI's `prompt_tokens_details.cached_tokens` (litellm reports Anthropic's
    cache reads there too); `cache_write` is Anthropic's `cache_creation_input_tokens`
    (tokens written to the cache, billed above the input rate). Both are part of `prompt`.
    """

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    cache_write: int = 0

    @classmethod
    def of(cls, usage: Any) -> TokenCounts:
        """The counts of a litellm `Usage` (or a dict of the same fields; None: zeros)."""
        details = _field(usage, "prompt_tokens_details")
        prompt = _count(_field(usage, "prompt_tokens"))
        cached = min(prompt, _count(_field(details, "cached_tokens")))
        write = _count(_field(usage, "cache_creation_input_tokens"))
        return cls(
            prompt=prompt,
            completion=_count(_field(usage, "completion_tokens")),
            cached=cached,
            cache_write=min(write, prompt - cached),
        )


def _field(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _count(value: Any) -> int:
    # Providers send null for what they do not count; anything but a number is none.
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


#: Told of each record as soon as it is known; may be a coroutine function.
OnRecord = Callable[[UsageRecord], Awaitable[None] | None]


async def emit(on_record: OnRecord | None, record: UsageRecord) -> None:
    """Hand `record` to `on_record`; a failing recorder is logged, never raised."""
    if on_record is None:
        return
    try:
        result = on_record(record)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # A failing recorder must not turn a good answer into a failed call; it is logged.
        log.exception("on_record failed for a %s/%s call", record.role, record.purpose)
