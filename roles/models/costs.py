"""What tokens cost, by litellm's bundled price table (never fetched: see `client`).

A model missing from the table has no known price: what it used costs "unknown" (None),
never $0, which would read as free.

Prompt caching changes what prompt tokens cost, not how many there are: `cached` prompt
tokens (read from the provider's cache) are priced at the model's cached-input rate (a tenth
of the input rate on OpenAI's and Anthropic's current models), and `cache_write` tokens
(written to it: Anthropic bills them above the input rate) at the cache-write rate; both are
part of `prompt_tokens`, as litellm counts them. litellm's price table has these rates, and
`cost_per_token` applies them (`cache_read_input_tokens`, `cache_creation_input_tokens`).
The same tokens with `cached=0` are what they would have cost without caching.
"""

from __future__ import annotations

import functools

from roles.models.client import litellm

__all__ = ["cost_of", "premium_cost", "price_known", "price_per_million"]


@functools.lru_cache(maxsize=256)
def price_known(model: str) -> bool:
    """Whether litellm's price table prices `model`."""
    if not model:
        return False
    try:
        litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
    except Exception:  # litellm raises for models missing from its table
        return False
    return True


def cost_of(
    prompt_tokens: int,
    completion_tokens: int,
    model: str,
    cached: int = 0,
    cache_write: int = 0,
) -> float | None:
    """What these tokens cost on `model`; 0.0 for none; None when the price is unknown.

    `cached` and `cache_write` are the prompt tokens read from and written to the
    provider's prompt cache (part of `prompt_tokens`; see the module docstring)."""
    if prompt_tokens <= 0 and completion_tokens <= 0:
        return 0.0
    if not price_known(model):
        return None
    cached = max(0, min(cached, prompt_tokens))
    cache_write = max(0, min(cache_write, prompt_tokens - cached))
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=cache_write,
    )
    return float(prompt_cost) + float(completion_cost)


def premium_cost(
    prompt_tokens: int, completion_tokens: int, model: str, cached: int = 0
) -> float | None:
    """What these tokens would cost on the premium `model` (None: its price is unknown),
    `cached` of the prompt tokens read from the premium model's prompt cache."""
    return cost_of(prompt_tokens, completion_tokens, model, cached)


@functools.lru_cache(maxsize=256)
def price_per_million(model: str) -> tuple[float, float] | None:
    """Dollars per million input and per million output tokens of `model`; None: unknown.

    Cached: the price table is bundled and never changes in a process, and daemon/status
    (which the dashboard polls every second) asks for every role's model each time."""
    if not price_known(model):
        return None
    per_input, _ = litellm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=0)
    _, per_output = litellm.cost_per_token(
        model=model, prompt_tokens=0, completion_tokens=1_000_000
    )
    return float(per_input), float(per_output)
