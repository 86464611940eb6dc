"""The report stored with every finished (or failed, or canceled) task.

It answers what a reviewer of the work wants to know: the plan; each stream's output, verdict
and rounds; tokens and dollars per role and per stream; what the same tokens would have cost
on the orchestrator's model ("tiering saved"); wall-clock time beside the sequential sum of
the streams and the critical path.

A model whose price litellm does not know makes every sum it is part of unknown (None), and
the report names it in `cost.unknown_price_models`: an unknown cost is never shown as $0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from roles.models.usage import UsageRecord
from roles.plan.schema import Plan
from roles.plan.validator import critical_path

ORCHESTRATION_PURPOSES = ("plan", "review", "conflicts", "fix", "merge")


@dataclass
class StreamFacts:
    id: str
    title: str
    state: str
    output: str | None
    verdict: str | None
    reason: str | None
    rounds: int
    started_at: float | None
    ended_at: float | None
    parent: str | None = None

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)


#: A bucket of usage: counts, and dollars (None once any part of them has no known price).
Bucket = dict[str, float | None]
#: What tokens cost on a model: (prompt tokens, completion tokens, model) -> dollars or None.
Pricing = Callable[[int, int, str], float | None]


def _bucket() -> Bucket:
    return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "cost_usd": 0.0}


def _plus(a: float | None, b: float | None) -> float | None:
    """A sum of dollars: unknown if any part is."""
    return None if a is None or b is None else a + b


def _add(bucket: Bucket, u: UsageRecord) -> None:
    for name, value in (
        ("calls", 1),
        ("prompt_tokens", u.prompt_tokens),
        ("completion_tokens", u.completion_tokens),
        ("tokens", u.prompt_tokens + u.completion_tokens),
    ):
        bucket[name] = (bucket[name] or 0) + value
    bucket["cost_usd"] = _plus(bucket["cost_usd"], u.cost_usd)


def _rounded(dollars: float | None) -> float | None:
    return None if dollars is None else round(dollars, 8)


def _usage(
    usage: list[UsageRecord], premium_model: str, premium_cost: Pricing
) -> tuple[dict[str, Bucket], dict[str, Any], dict[str, Any]]:
    """Tokens and dollars per stream, the report's `usage` section and its `cost` section."""
    per_role: dict[str, Bucket] = defaultdict(_bucket)
    per_stream: dict[str, Bucket] = defaultdict(_bucket)
    per_purpose: dict[str, Bucket] = defaultdict(_bucket)
    total = _bucket()
    for u in usage:
        _add(per_role[u.role], u)
        _add(per_purpose[u.purpose], u)
        _add(total, u)
        if u.stream_id:
            _add(per_stream[u.stream_id], u)
    premium_only: float | None = 0.0
    for u in usage:
        premium_only = _plus(
            premium_only, premium_cost(u.prompt_tokens, u.completion_tokens, premium_model)
        )
    spent = total["cost_usd"]
    orchestration_tokens = sum(
        per_purpose[p]["tokens"] or 0 for p in ORCHESTRATION_PURPOSES if p in per_purpose
    )
    tokens = total["tokens"] or 0
    section = {
        "total": total,
        "per_role": dict(per_role),
        "per_purpose": dict(per_purpose),
        "orchestration_tokens": orchestration_tokens,
        "orchestration_share": (orchestration_tokens / tokens if tokens else 0.0),
    }
    cost = {
        "total_usd": _rounded(spent),
        "premium_model": premium_model,
        "premium_only_usd": _rounded(premium_only),
        "tiering_saved_usd": _rounded(
            None if premium_only is None or spent is None else premium_only - spent
        ),
        # The models whose use has no known price (every sum they are in is None).
        "unknown_price_models": sorted({u.model for u in usage if u.cost_usd is None}),
    }
    return per_stream, section, cost


def _times(
    plan: Plan | None, streams: list[StreamFacts], started_at: float, ended_at: float
) -> dict[str, float]:
    """Wall-clock time beside the sequential sum of the streams and the critical path."""
    top = [s for s in streams if s.parent is None]
    durations = {s.id: s.duration for s in top}
    starts = [s.started_at for s in streams if s.started_at is not None]
    ends = [s.ended_at for s in streams if s.ended_at is not None]
    return {
        "wall_clock_s": round(ended_at - started_at, 4),
        "execution_s": round(max(ends) - min(starts), 4) if starts and ends else 0.0,
        "sequential_s": round(sum(durations.values()), 4),
        "critical_path_s": round(critical_path(plan, durations), 4) if plan else 0.0,
    }


def build_report(
    *,
    state: str,
    plan: Plan | None,
    streams: Iterable[StreamFacts],
    usage: Iterable[UsageRecord],
    premium_model: str,
    premium_cost: Pricing,
    started_at: float,
    ended_at: float,
    settings: dict[str, Any],
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    streams = list(streams)
    per_stream, usage_section, cost = _usage(list(usage), premium_model, premium_cost)
    report: dict[str, Any] = {
        "state": state,
        "error": error,
        "plan": plan.model_dump() if plan else None,
        "streams": [
            {
                "id": s.id,
                "title": s.title,
                "parent": s.parent,
                "state": s.state,
                "output": s.output,
                "verdict": s.verdict,
                "reason": s.reason,
                "rounds": s.rounds,
                "duration_s": round(s.duration, 4),
                "usage": per_stream.get(s.id, _bucket()),
            }
            for s in streams
        ],
        "usage": usage_section,
        "cost": cost,
        "time": _times(plan, streams, started_at, ended_at),
        "rules": {k: v for k, v in settings.items() if k.startswith("rules.")},
        "settings": settings,
    }
    if extra:
        report.update(extra)
    return report
