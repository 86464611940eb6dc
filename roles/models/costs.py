"""What tokens cost, by litellm's bundled price table (never fetched: see `client`)."""

from __future__ import annotations

from roles.models.client import litellm

__all__ = ["premium_cost"]


def premium_cost(prompt_tokens: int, completion_tokens: int, model: str) -> float:
    """What these tokens cost on `model` by litellm's price table; 0.0 if it is not listed."""
    if not model or (prompt_tokens <= 0 and completion_tokens <= 0):
        return 0.0
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models missing from its table
        return 0.0
    return float(prompt_cost) + float(completion_cost)
