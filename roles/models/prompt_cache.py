"""Where a prompt's stable prefix ends, and how a provider that needs to be told is told.

tierd's premium prompts (`roles.prompts`) are a system message and the task's material as a
first user message, the same bytes for all of one task's premium calls, then the call's own
request as a second user message: `prefix_end` finds that shape. OpenAI caches such a prefix
by itself (1,024 tokens or more), and needs nothing. Anthropic caches only up to a block
marked `cache_control: {"type": "ephemeral"}`, which litellm passes through as a field of a
content block: `mark_prefix` adds that mark at the end of the prefix, for Anthropic's models
only (also through Bedrock and Vertex AI), and leaves every other provider's messages as
they are (an OpenAI-compatible local server might not accept the field).

Anthropic bills what it writes to the cache at 1.25 times the input rate and what it reads at
a tenth: the prefix pays for itself from its second use, which every task with more than one
premium call after planning gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roles.models.routing import provider_of

__all__ = ["CACHE_CONTROL", "mark_prefix", "prefix_end", "uses_cache_control"]

#: Anthropic's mark: cache the prompt up to and including this block (for five minutes).
CACHE_CONTROL = {"type": "ephemeral"}
#: Providers that cache only what is marked (the Claude models on them).
_MARKED_PROVIDERS = frozenset({"anthropic"})
_CLAUDE_HOSTS = frozenset({"bedrock", "vertex_ai", "vertex_ai_beta"})


def prefix_end(messages: Sequence[dict[str, Any]]) -> int:
    """How many of the first messages are the stable prefix: 2 for a premium prompt (a
    system message, then a user message followed directly by another), else 0."""
    if (
        len(messages) >= 3
        and messages[0].get("role") == "system"
        and messages[1].get("role") == "user"
        and messages[2].get("role") == "user"
    ):
        return 2
    return 0


def uses_cache_control(model: str, api_base: str | None = None) -> bool:
    """Whether `model`'s provider caches only what `cache_control` marks (Anthropic's)."""
    provider = provider_of(model, api_base)
    if provider in _MARKED_PROVIDERS:
        return True
    return provider in _CLAUDE_HOSTS and "claude" in model.lower()


def mark_prefix(
    messages: list[dict[str, Any]], model: str, api_base: str | None = None
) -> list[dict[str, Any]]:
    """`messages` with the end of their stable prefix marked for `model`'s provider: a copy
    whose last prefix message is a content block with `cache_control`, for Anthropic's
    models; the same list for every other provider, or when there is no prefix."""
    end = prefix_end(messages)
    if not end or not uses_cache_control(model, api_base):
        return messages
    marked = [dict(message) for message in messages]
    last = marked[end - 1]
    content = last.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list) and content:
        blocks = [dict(part) if isinstance(part, dict) else part for part in content]
    else:
        return messages
    if isinstance(blocks[-1], dict):
        blocks[-1]["cache_control"] = dict(CACHE_CONTROL)
    last["content"] = blocks
    return marked
