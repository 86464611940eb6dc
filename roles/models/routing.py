"""Where a model is served, and whether a tier can be used at all, checked before any call.

litellm routes a model by the provider in its name ("openai/gpt-5-mini", "anthropic/...");
a name it cannot route ("nosuchprovider/foo-7b") used to be accepted and to fail only at its
first call, after the planner had spent money. `check_tier` finds that up front: a model (or
fallback) with no provider is a `ModelConfigError` naming the role and the model; a model
served from an `api_base` needs no provider in its name (the server is OpenAI-compatible).
A model whose price litellm does not know is accepted, with a warning: its cost is reported
as unknown, never as $0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from roles.models.client import litellm
from roles.models.costs import price_known
from roles.models.errors import ModelConfigError
from roles.models.tier import ModelTier

__all__ = ["check_tier", "check_tiers", "litellm_provider", "provider_of"]


@functools.lru_cache(maxsize=256)
def litellm_provider(model: str) -> str | None:
    """The provider litellm routes `model` to by its name; None when it cannot.

    Asked for every call (the request's arguments, the key's scope): litellm works it out
    afresh each time, and the answer is fixed for a name, so it is kept.
    """
    try:
        provider = litellm.get_llm_provider(model)[1]
    except Exception:  # litellm raises BadRequestError: "LLM Provider NOT provided"
        return None
    return str(provider) if provider else None


def provider_of(model: str, api_base: str | None) -> str | None:
    """The litellm provider that serves `model`; None when litellm cannot route it.

    With an `api_base`, a name litellm cannot route is served by that OpenAI-compatible
    server (a bare "llama3" on Ollama, "org/model" on vLLM): "openai".
    """
    return litellm_provider(model) or ("openai" if api_base else None)


def check_tier(tier: ModelTier, role: str) -> list[str]:
    """Check every model of `role`'s tier before any call; return warnings for a person.

    Raises ModelConfigError (naming the role, the key and the model) when litellm cannot
    route a model. A model whose price is unknown gives a warning: its cost is "unknown".
    """
    warnings = []
    for index, (model, api_base) in enumerate(tier.endpoints()):
        key = f"models.{role}.model" if index == 0 else f"models.{role}.fallbacks"
        if provider_of(model, api_base) is None:
            raise ModelConfigError(
                f"{key}: litellm cannot tell which provider serves {model!r}: name it as "
                "provider/model (e.g. 'openai/gpt-5-mini', 'anthropic/claude-sonnet-4-5'), "
                f"or serve it from an OpenAI-compatible server (models.{role}.api_base, or "
                "'model@http://host/v1' for a fallback)",
                role=role,
                model=model,
            )
        if not price_known(model):
            warnings.append(
                f"{key}: litellm does not know the price of {model!r}; "
                "its cost will be reported as unknown"
            )
    return warnings


def check_tiers(tiers: Mapping[str, ModelTier]) -> list[str]:
    """`check_tier` for every role's tier; the warnings of all of them."""
    return [w for role, tier in tiers.items() for w in check_tier(tier, role)]
