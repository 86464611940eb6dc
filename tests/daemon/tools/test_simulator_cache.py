"""The simulator's prompt cache: cached prompt tokens as OpenAI reports them (a prefix seen
before for the same model, 1,024 tokens or more, in 128-token steps), by the rule itself and
over real HTTP through litellm."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from support.simulator import calls, running_simulator, stats

from daemon.tools.simulator.prompt_cache import (
    CHARS_PER_TOKEN,
    PromptCache,
    cacheable_tokens,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}


def text(tokens: int, seed: str = "a") -> str:
    """`tokens` tokens of text (four characters each) that differ by `seed` from the start."""
    return (seed * CHARS_PER_TOKEN * tokens)[: tokens * CHARS_PER_TOKEN]


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "cacheable"),
    [(0, 0), (1023, 0), (1024, 1024), (1151, 1024), (1152, 1152), (3000, 2944)],
)
def test_cacheable_lengths_are_1024_and_128_steps(tokens: int, cacheable: int) -> None:
    assert cacheable_tokens(tokens) == cacheable


def test_a_prefix_seen_before_for_the_same_model_is_cached_in_128_token_steps() -> None:
    cache = PromptCache()
    prefix = text(2000)
    assert cache.take("gpt-5", "", prefix + text(300, "b")) == 0  # nothing seen yet
    # The same 2,000-token prefix, another tail: 1,024 + 7 x 128 = 1,920 tokens cached.
    assert cache.take("gpt-5", "", prefix + text(500, "c")) == 1920
    # Longer again: the longest step the second prompt reached (2,432 of its 2,500 tokens).
    assert cache.take("gpt-5", "", prefix + text(500, "c") + text(200, "d")) == 2432


def test_another_model_or_preamble_shares_nothing() -> None:
    cache = PromptCache()
    prompt = text(3000)
    assert cache.take("gpt-5", "", prompt) == 0
    assert cache.take("gpt-5-mini", "", prompt) == 0
    # Another structured-output schema comes before the messages: no prefix in common.
    assert cache.take("gpt-5", '{"response_format":"Review"}', prompt) == 0
    assert cache.take("gpt-5", "", prompt) == 2944


def test_below_1024_tokens_nothing_is_cached() -> None:
    cache = PromptCache()
    short = text(1000)
    cache.take("gpt-5", "", short)
    assert cache.take("gpt-5", "", short) == 0
    # A prefix of 1,023 common tokens is not enough either.
    cache.take("gpt-5", "", text(1023) + text(500, "x"))
    assert cache.take("gpt-5", "", text(1023) + text(500, "y")) == 0


def test_a_difference_early_in_the_prompt_ends_the_match_there() -> None:
    cache = PromptCache()
    cache.take("gpt-5", "", text(1100) + text(2000, "b"))
    # The same text after token 1,100 does not count: the match ends at the first difference.
    assert cache.take("gpt-5", "", text(1100) + "z" + text(2000, "b")) == 1024


def test_the_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = PromptCache(max_entries=8)
    cache.take("gpt-5", "", text(2000))  # 8 steps: 1,024 ... 1,920
    assert len(cache) == 8
    cache.take("gpt-5", "", text(1200, "q"))  # two more steps push the oldest two out
    assert len(cache) == 8
    assert cache.take("gpt-5", "", text(2000)) == 1920  # the longer prefixes are still there
    cache.clear()
    assert cache.take("gpt-5", "", text(2000)) == 0


# --- over HTTP -----------------------------------------------------------------------------


def _ask(url: str, messages: list[dict[str, Any]], model: str = "gpt-5", **body: Any) -> Any:
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        headers={"X-Tierd-Role": "orchestrator", "X-Tierd-Purpose": "merge"},
        json={"model": model, "messages": messages, **body},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["usage"]


def test_answers_report_cached_tokens_like_openai() -> None:
    prefix = [{"role": "system", "content": text(1500)}, {"role": "user", "content": text(200)}]
    with running_simulator(FAST) as sim:
        first = _ask(sim.url, [*prefix, {"role": "user", "content": "first tail"}])
        second = _ask(sim.url, [*prefix, {"role": "user", "content": "second tail"}])
        other_model = _ask(sim.url, [*prefix, {"role": "user", "content": "x"}], "gpt-5-mini")
        schema = {"type": "json_schema", "json_schema": {"name": "Review", "schema": {}}}
        other_schema = _ask(
            sim.url, [*prefix, {"role": "user", "content": "y"}], **{"response_format": schema}
        )
        assert first["prompt_tokens_details"] == {"cached_tokens": 0}
        # 1,700 tokens and a newline in common: 1,024 + 5 x 128.
        assert second["prompt_tokens_details"]["cached_tokens"] == 1664
        assert second["prompt_tokens"] > 1664
        assert other_model["prompt_tokens_details"]["cached_tokens"] == 0
        assert other_schema["prompt_tokens_details"]["cached_tokens"] == 0
        records = calls(sim.url)
        assert [r["cached_tokens"] for r in records] == [0, 1664, 0, 0]
        assert stats(sim.url)["cached_tokens"] == 1664
        # A reset forgets the prefixes with the calls.
        httpx.post(f"{sim.url}/_sim/reset", timeout=10).raise_for_status()
        again = _ask(sim.url, [*prefix, {"role": "user", "content": "second tail"}])
        assert again["prompt_tokens_details"]["cached_tokens"] == 0


async def test_litellm_reads_the_cached_tokens_streamed_or_not() -> None:
    from roles.models.client import litellm

    prefix = [{"role": "system", "content": text(1300)}]
    with running_simulator(FAST) as sim:
        kwargs: dict[str, Any] = {
            "model": "openai/gpt-5",
            "api_base": sim.api_base,
            "api_key": "sim",
            "extra_headers": {"X-Tierd-Role": "orchestrator", "X-Tierd-Purpose": "merge"},
        }
        await litellm.acompletion(messages=[*prefix, {"role": "user", "content": "a"}], **kwargs)
        plain = await litellm.acompletion(
            messages=[*prefix, {"role": "user", "content": "b"}], **kwargs
        )
        assert plain.usage.prompt_tokens_details.cached_tokens == 1280
        stream = await litellm.acompletion(
            messages=[*prefix, {"role": "user", "content": "c"}],
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
        chunks = [chunk async for chunk in stream]
        built = litellm.stream_chunk_builder(chunks)
        assert built.usage.prompt_tokens_details.cached_tokens == 1280
