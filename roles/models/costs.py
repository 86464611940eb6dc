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

Every model call is priced four times (what it cost, and for the report without caching, on
the premium model, and both), and `litellm.cost_per_token` takes about 0.15 ms a call: a
tenth of the daemon's own CPU per stream. A model whose price is four per-token rates (no
tiers above a prompt size, no off-peak hours, no per-request or per-second fees) is priced
here from those rates, read from litellm once and checked against litellm at token counts up
to `LINEAR_UP_TO`; any other model, or a bigger call, goes to litellm each time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from roles.models.client import litellm

__all__ = ["LINEAR_UP_TO", "cost_of", "premium_cost", "price_known", "price_per_million"]

#: The largest prompt or completion (tokens) priced from a model's per-token rates; the
#: price table's tiers start at 512k tokens at most, and the check prices this many.
LINEAR_UP_TO = 1_000_000

# Price keys that leave a call's price linear in its four token counts when tierd passes
# only those counts: a service tier's rates (`_batches`, `_flex`, ...) apply only when asked
# for, per-query search and reasoning-token rates only with those details.
_LINEAR_KEYS = frozenset(
    {
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "output_cost_per_reasoning_token",
        "search_context_cost_per_query",
    }
)
_TIER_SUFFIXES = ("_batches", "_flex", "_priority")


@dataclass(frozen=True)
class _Rates:
    """Dollars per token: uncached prompt, cache read, cache write, completion."""

    prompt: float
    cached: float
    write: float
    completion: float

    def price(self, prompt: int, completion: int, cached: int, write: int) -> float:
        return (
            (prompt - cached - write) * self.prompt
            + cached * self.cached
            + write * self.write
            + completion * self.completion
        )


def _litellm_cost(prompt: int, completion: int, model: str, cached: int, write: int) -> float:
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=write,
    )
    return float(prompt_cost) + float(completion_cost)


def _price_keys_linear(model: str) -> bool:
    try:
        info = litellm.get_model_info(model=model)
    except Exception:  # litellm raises for models missing from its table
        return False
    raw = litellm.model_cost.get(info.get("key") or model) or {}
    keys = {k for k in raw if "cost" in k or "pricing" in k}
    return all(k in _LINEAR_KEYS or k.endswith(_TIER_SUFFIXES) for k in keys)


@functools.lru_cache(maxsize=256)
def _linear_rates(model: str) -> _Rates | None:
    """`model`'s four per-token rates, if its price is linear in them (see the module
    docstring); None: ask litellm for every call."""
    if not price_known(model) or not _price_keys_linear(model):
        return None
    rates = _Rates(
        prompt=_litellm_cost(1, 0, model, 0, 0),
        cached=_litellm_cost(1, 0, model, 1, 0),
        write=_litellm_cost(1, 0, model, 0, 1),
        completion=_litellm_cost(0, 1, model, 0, 0),
    )
    n = LINEAR_UP_TO
    for point in ((n, 0, 0, 0), (0, n, 0, 0), (n, n, n // 2, n // 4), (n // 3, 7, n // 5, 0)):
        if not math.isclose(
            rates.price(*point), _litellm_cost(point[0], point[1], model, *point[2:]), rel_tol=1e-9
        ):
            return None
    return rates


@functools.lru_cache(maxsize=256)
def price_known(model: str) -> bool:
    """Whether litellm's price table prices `model`."""
    if not model:
        return False
    try:
        _litellm_cost(1, 1, model, 0, 0)
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
    rates = _linear_rates(model)
    if rates is not None and max(prompt_tokens, completion_tokens) <= LINEAR_UP_TO:
        return rates.price(prompt_tokens, completion_tokens, cached, cache_write)
    return _litellm_cost(prompt_tokens, completion_tokens, model, cached, cache_write)


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
    million = 1_000_000
    return _litellm_cost(million, 0, model, 0, 0), _litellm_cost(0, million, model, 0, 0)
