"""The report stored with every finished (or failed, or canceled) task.

It answers what a reviewer of the work wants to know: the plan; each stream's output, verdict
and rounds; tokens and dollars per role and per stream; what the same tokens would have cost
on the orchestrator's model ("tiering saved"); wall-clock time beside the sequential sum of
the streams and the critical path.
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


def _bucket() -> dict[str, float]:
    return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "cost_usd": 0.0}


def _add(bucket: dict[str, float], u: UsageRecord) -> None:
    bucket["calls"] += 1
    bucket["prompt_tokens"] += u.prompt_tokens
    bucket["completion_tokens"] += u.completion_tokens
    bucket["tokens"] += u.prompt_tokens + u.completion_tokens
    bucket["cost_usd"] += u.cost_usd


def _usage(
    usage: list[UsageRecord], premium_model: str, premium_cost: Callable[[int, int, str], float]
) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, Any]]:
    """Tokens and dollars per stream, the report's `usage` section and its `cost` section."""
    per_role: dict[str, dict[str, float]] = defaultdict(_bucket)
    per_stream: dict[str, dict[str, float]] = defaultdict(_bucket)
    per_purpose: dict[str, dict[str, float]] = defaultdict(_bucket)
    total = _bucket()
    for u in usage:
        _add(per_role[u.role], u)
        _add(per_purpose[u.purpose], u)
        _add(total, u)
        if u.stream_id:
            _add(per_stream[u.stream_id], u)
    premium_only = sum(
        premium_cost(u.prompt_tokens, u.completion_tokens, premium_model) for u in usage
    )
    orchestration_tokens = sum(
        per_purpose[p]["tokens"] for p in ORCHESTRATION_PURPOSES if p in per_purpose
    )
    section = {
        "total": total,
        "per_role": dict(per_role),
        "per_purpose": dict(per_purpose),
        "orchestration_tokens": orchestration_tokens,
        "orchestration_share": (orchestration_tokens / total["tokens"] if total["tokens"] else 0.0),
    }
    cost = {
        "total_usd": round(total["cost_usd"], 8),
        "premium_model": premium_model,
        "premium_only_usd": round(premium_only, 8),
        "tiering_saved_usd": round(premium_only - total["cost_usd"], 8),
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
    premium_cost: Callable[[int, int, str], float],
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
