"""A tier is checked before any call: a model litellm cannot route is refused naming the role
and the model; one whose price litellm does not know is accepted with a warning, and what it
used costs "unknown" in records and reports, never $0."""

from __future__ import annotations

from typing import Any

import pytest
from support import CHEAP, PREMIUM

from roles.models.costs import cost_of, price_known
from roles.models.errors import ModelConfigError
from roles.models.routing import check_tier, check_tiers, provider_of
from roles.models.tier import ModelTier
from roles.models.usage import UsageRecord
from roles.report import build_report

NO_PROVIDER = "nosuchprovider/foo-7b"
UNPRICED = "openai/qwen2.5-coder"  # the README's example of a local model


def test_a_model_no_provider_serves_is_refused_naming_the_role_and_the_model() -> None:
    with pytest.raises(ModelConfigError) as refused:
        check_tier(ModelTier(model=NO_PROVIDER), "executor")
    message = str(refused.value)
    assert message.startswith(
        f"models.executor.model: litellm cannot tell which provider serves '{NO_PROVIDER}'"
    )
    assert "models.executor.api_base" in message
    # One clear sentence, not litellm's paragraph ("LLM Provider NOT provided ... Learn more").
    assert "NOT provided" not in message and "\n" not in message
    assert (refused.value.role, refused.value.model) == ("executor", NO_PROVIDER)


def test_a_fallback_no_provider_serves_is_refused_naming_the_fallbacks_key() -> None:
    tier = ModelTier(model=PREMIUM, fallbacks=[NO_PROVIDER])
    with pytest.raises(ModelConfigError, match=r"^models\.planner\.fallbacks: .*foo-7b"):
        check_tiers({"orchestrator": ModelTier(model=PREMIUM), "planner": tier})


@pytest.mark.parametrize(
    "tier",
    [
        ModelTier(model=PREMIUM),
        ModelTier(model="gpt-5-mini"),  # litellm knows OpenAI's bare names
        ModelTier(model="anthropic/claude-sonnet-4-5"),
        # Served by an OpenAI-compatible server: any name, with or without a slash.
        ModelTier(model="llama3", api_base="http://127.0.0.1:11434/v1"),
        ModelTier(model=NO_PROVIDER, api_base="http://127.0.0.1:8000/v1"),
        ModelTier(model=CHEAP, fallbacks=[f"{NO_PROVIDER}@http://10.0.0.5:8000/v1"]),
    ],
)
def test_routable_tiers_pass(tier: ModelTier) -> None:
    check_tier(tier, "executor")
    for model, api_base in tier.endpoints():
        assert provider_of(model, api_base) is not None


def test_an_unknown_price_is_a_warning_and_the_cost_unknown_never_zero() -> None:
    local = ModelTier(model=UNPRICED, api_base="http://127.0.0.1:11434/v1")
    assert check_tier(ModelTier(model=PREMIUM, fallbacks=[CHEAP]), "planner") == []
    (warning,) = check_tier(local, "executor")
    assert warning.startswith("models.executor.model: litellm does not know the price of")
    assert UNPRICED in warning and "unknown" in warning
    assert not price_known(UNPRICED) and price_known(CHEAP)
    assert cost_of(1000, 100, UNPRICED) is None
    assert cost_of(0, 0, UNPRICED) == 0.0  # nothing used costs nothing, priced or not
    assert (cost_of(1000, 100, CHEAP) or 0) > 0


def record(role: str, model: str, cost: float | None, **kw: Any) -> UsageRecord:
    return UsageRecord(
        task_id="t1",
        stream_id=kw.pop("stream_id", None),
        role=role,
        purpose=kw.pop("purpose", "execute"),
        model=model,
        prompt_tokens=1000,
        completion_tokens=100,
        cost_usd=cost,
        **kw,
    )


def test_the_report_shows_an_unknown_cost_as_unknown() -> None:
    usage = [
        record("planner", PREMIUM, 0.02, purpose="plan"),
        record("executor", UNPRICED, None, stream_id="s1"),
        record("orchestrator", PREMIUM, 0.01, purpose="review", stream_id="s1"),
    ]
    report = build_report(
        state="completed",
        plan=None,
        streams=[],
        usage=usage,
        premium_model=PREMIUM,
        premium_cost=cost_of,
        started_at=0.0,
        ended_at=1.0,
        settings={},
    )
    per_role = report["usage"]["per_role"]
    assert per_role["planner"]["cost_usd"] == pytest.approx(0.02)
    assert per_role["executor"]["cost_usd"] is None
    assert report["usage"]["total"]["cost_usd"] is None
    cost = report["cost"]
    assert cost["total_usd"] is None and cost["tiering_saved_usd"] is None
    assert cost["premium_only_usd"] > 0  # the premium model's price is known
    assert cost["unknown_price_models"] == [UNPRICED]


def test_litellm_is_asked_about_a_model_once_however_many_calls_it_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its provider, whether it takes a JSON schema and whether it sees images are fixed for
    a model name: every structured call used to ask litellm's table all three again."""
    from roles.models import content, routing, transport
    from roles.plan.schema import Review

    asked: dict[str, list[str]] = {}
    for name in ("get_llm_provider", "supports_response_schema", "supports_vision"):
        real = getattr(routing.litellm, name)

        def counted(*a: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
            asked.setdefault(_name, []).append(kw.get("model") or a[0])
            return _real(*a, **kw)

        monkeypatch.setattr(routing.litellm, name, counted)
    # Asked afresh by this test (another may have asked about the model before).
    for kept in (routing.litellm_provider, transport._supports_schema, content.sees_images):
        getattr(kept, "cache_clear", lambda: None)()
    model, api_base = "openai/gpt-5-nano", "http://127.0.0.1:9/v1"
    c = transport.Attempts(
        ModelTier(model=model, api_base=api_base), "o", "r", "t", None, 0, None, {}
    )

    def call() -> None:
        kwargs = c.request(model, api_base, None, [{"role": "user", "content": "x"}], Review)
        assert kwargs["response_format"]["json_schema"]["name"] == "Review"
        assert content.sees_images(model)

    call()
    first = {name: len(models) for name, models in asked.items()}
    assert set(first) == {"get_llm_provider", "supports_response_schema", "supports_vision"}
    call()
    call()
    assert {name: len(models) for name, models in asked.items()} == first
    # Kept per name: another model is asked about in its own right.
    assert routing.provider_of("anthropic/claude-sonnet-4-5", None) == "anthropic"
    assert asked["get_llm_provider"][-1] == "anthropic/claude-sonnet-4-5"
