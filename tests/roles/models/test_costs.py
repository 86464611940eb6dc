"""Prices from per-token rates equal litellm's own, on every model of its bundled table."""

from __future__ import annotations

import random

import litellm
import pytest

from roles.models import costs
from roles.models.costs import LINEAR_UP_TO, cost_of


def _litellm(prompt: int, completion: int, model: str, cached: int, write: int) -> float:
    p, c = litellm.cost_per_token(
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=write,
    )
    return float(p) + float(c)


def _points(rng: random.Random) -> list[tuple[int, int, int, int]]:
    out = [(1_000, 200, 0, 0), (LINEAR_UP_TO, LINEAR_UP_TO, 0, 0), (300_000, 50, 0, 0)]
    for _ in range(3):
        prompt = rng.randint(1, LINEAR_UP_TO)
        cached = rng.randint(0, prompt)
        write = rng.randint(0, prompt - cached)
        out.append((prompt, rng.randint(0, 100_000), cached, write))
    return out


def test_every_chat_model_is_priced_as_litellm_prices_it() -> None:
    rng = random.Random(20)
    chat = sorted(
        m
        for m, info in litellm.model_cost.items()
        if isinstance(info, dict) and info.get("mode") == "chat"
    )
    # OpenAI's and Anthropic's models all, a fixed sample of the rest (the whole table
    # takes half a minute: litellm prices a call in 0.15 ms).
    main = [m for m in chat if m.startswith(("gpt-", "o1", "o3", "o4", "claude-"))]
    chat = main + rng.sample([m for m in chat if m not in main], 250)
    linear = 0
    for model in chat:
        if not costs.price_known(model):  # litellm cannot price it: unknown, never $0
            assert cost_of(1_000, 10, model) is None
            continue
        linear += costs._linear_rates(model) is not None
        for prompt, completion, cached, write in _points(rng):
            want = _litellm(prompt, completion, model, cached, write)
            got = cost_of(prompt, completion, model, cached, write)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-15), (model, prompt, cached, write)
    # The fast path is taken for most of the table, tiered and off-peak models included not.
    assert linear > len(chat) // 2
    assert costs._linear_rates("gemini/gemini-2.5-pro") is None  # tiered above 200k tokens
    assert costs._linear_rates("gpt-5.4") is None  # tiered above 272k tokens
    assert costs._linear_rates("gpt-5") is not None


def test_a_call_beyond_the_checked_range_is_priced_by_litellm() -> None:
    big = LINEAR_UP_TO * 3
    assert cost_of(big, 10, "gpt-5") == pytest.approx(_litellm(big, 10, "gpt-5", 0, 0))
