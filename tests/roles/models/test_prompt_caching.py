"""Prompt caching in the model layer: the Anthropic cache mark at the end of a premium
prompt's prefix (and only for Anthropic's models), the cached tokens read from litellm's
usage, and their price (cached input at the cached rate)."""

from __future__ import annotations

import copy
import os

import pytest

from roles.models.costs import cost_of, premium_cost
from roles.models.prompt_cache import CACHE_CONTROL, mark_prefix, prefix_end, uses_cache_control
from roles.models.usage import TokenCounts
from roles.plan.schema import Plan, StreamSpec
from roles.prompts import PromptRules, TaskBrief, executor_messages, review_messages

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

STREAM = StreamSpec(id="a", title="A", job="Do a.", output_definition="An a.")


def premium_prompt() -> list[dict[str, object]]:
    brief = TaskBrief("The goal", PromptRules(), "The context").with_plan(Plan(streams=[STREAM]))
    return review_messages(STREAM, "THE OUTPUT", PromptRules(), brief=brief)


def test_a_premium_prompt_has_a_two_message_prefix_an_executors_none() -> None:
    assert prefix_end(premium_prompt()) == 2
    assert prefix_end(executor_messages(STREAM, "g", {}, PromptRules())) == 0
    assert prefix_end([]) == 0


@pytest.mark.parametrize(
    ("model", "api_base", "marked"),
    [
        ("anthropic/claude-sonnet-4-5", None, True),
        ("claude-sonnet-4-5", None, True),
        ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", None, True),
        ("openai/gpt-5", None, False),
        ("openai/gpt-5-mini", None, False),
        ("gemini/gemini-2.5-pro", None, False),
        ("llama3", "http://127.0.0.1:11434/v1", False),
        ("gpt-5", "http://127.0.0.1:8000/v1", False),
    ],
)
def test_the_cache_mark_is_there_only_for_anthropic_models(
    model: str, api_base: str | None, marked: bool
) -> None:
    messages = premium_prompt()
    before = copy.deepcopy(messages)
    out = mark_prefix(messages, model, api_base)
    assert messages == before  # the caller's messages are never changed
    assert uses_cache_control(model, api_base) is marked
    found = [
        (i, part)
        for i, message in enumerate(out)
        if isinstance(message["content"], list)
        for part in message["content"]
        if isinstance(part, dict) and "cache_control" in part
    ]
    if not marked:
        assert out == messages
        assert found == []
        return
    # One mark, on the prefix's last block: the task's material, not the request.
    assert [(i, part["cache_control"]) for i, part in found] == [(1, CACHE_CONTROL)]
    assert found[0][1]["text"] == messages[1]["content"]
    assert out[0] == messages[0] and out[2] == messages[2]


def test_a_prompt_without_a_prefix_is_not_marked() -> None:
    messages = executor_messages(STREAM, "g", {}, PromptRules())
    assert mark_prefix(messages, "anthropic/claude-sonnet-4-5") is messages


def test_cached_tokens_are_read_from_litellms_usage() -> None:
    from litellm.types.utils import PromptTokensDetailsWrapper, Usage

    usage = Usage(
        prompt_tokens=3000,
        completion_tokens=200,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=2048),
    )
    assert TokenCounts.of(usage) == TokenCounts(3000, 200, 2048, 0)
    assert TokenCounts.of(None) == TokenCounts()
    raw = {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}
    assert TokenCounts.of(raw) == TokenCounts(10, 2, 0, 0)
    # Never more cached than prompt tokens, whatever a server says.
    odd = {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 99}}
    assert TokenCounts.of(odd).cached == 10
    # Anthropic's cache writes (litellm's cache_creation_input_tokens) are counted apart.
    written = {"prompt_tokens": 3000, "cache_creation_input_tokens": 2500}
    assert TokenCounts.of(written) == TokenCounts(3000, 0, 0, 2500)


def test_cached_input_is_priced_at_the_cached_rate() -> None:
    # gpt-5: $1.25 per million input tokens, $0.125 cached (the figures the issue checked).
    assert cost_of(1000, 0, "openai/gpt-5") == pytest.approx(0.00125)
    assert cost_of(1000, 0, "openai/gpt-5", cached=800) == pytest.approx(0.00035)
    assert cost_of(1000, 0, "openai/gpt-5", cached=5000) == pytest.approx(0.000125)
    assert premium_cost(1000, 0, "openai/gpt-5", 800) == pytest.approx(0.00035)
    # Anthropic bills a cache write above the input rate: caching can cost more once.
    plain = cost_of(1000, 0, "anthropic/claude-sonnet-4-5")
    write = cost_of(1000, 0, "anthropic/claude-sonnet-4-5", cache_write=800)
    read = cost_of(1000, 0, "anthropic/claude-sonnet-4-5", cached=800)
    assert plain is not None and write is not None and read is not None
    assert read < plain < write
    assert cost_of(1000, 0, "openai/not-a-real-model-xyz", cached=800) is None
