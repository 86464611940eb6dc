"""The report stored with every finished (or failed, or canceled) task.

It answers what a reviewer of the work wants to know: the plan; each stream's output, verdict
and rounds; tokens and dollars per role and per stream; what the same tokens would have cost
on the orchestrator's model ("tiering saved"); wall-clock time beside the sequential sum of
the streams and the critical path.

Time spent waiting for the human (a question to answer, a result to approve) is the human's,
not the team's: it is reported apart (`time.human_wait_s`, each stream's `waited_s`), and left
out of every work figure (a stream's `duration_s`, `execution_s`, `sequential_s`, the critical
path, `work_s`), so a stream that waited 20 s for an answer and worked 2 s shows 2 s of work.

A model whose price litellm does not know makes every sum it is part of unknown (None), and
the report names it in `cost.unknown_price_models`: an unknown cost is never shown as $0.

Prompt caching: each usage bucket counts `cached_tokens` (prompt tokens the provider's cache
served, part of `prompt_tokens`), and the cost section says what caching saved
(`caching_saved_usd` = `uncached_usd`, the same tokens priced without caching, less
`total_usd`). `premium_only_usd` prices every call's prompt, cached and completion tokens on
the premium model: the same prompts sent to one model would be cached just the same, so the
tiering comparison is not tilted by caching either way; `premium_only_uncached_usd` is the
premium model without caching.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
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
    #: Seconds of its run the stream waited for the human (see `build_report`).
    waited: float = 0.0

    @property
    def elapsed(self) -> float:
        """From its start to its end, waits included."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)

    @property
    def duration(self) -> float:
        """Its work: the time from start to end less the time it waited for the human."""
        return max(0.0, self.elapsed - self.waited)


#: Spans of time (start, end) in Unix seconds.
Spans = list[tuple[float, float]]


def overlap(spans: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] that the spans (which may overlap each other) cover."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if b > start and a < end)
    total, reach = 0.0, start
    for a, b in clipped:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _waited(streams: list[StreamFacts], waits: Mapping[str, Spans], human: Spans) -> None:
    """Set each stream's `waited`: the part of its run covered by its own questions' waits,
    those of the sub-streams it was split into, and the task's waits for the human (then no
    stream can progress)."""
    if not waits and not human:
        return  # nothing waited: each stream keeps the `waited` it came with
    parents = {s.id: s.parent for s in streams}
    spans: dict[str, Spans] = {s.id: list(human) for s in streams}
    for sid, own in waits.items():
        seen: set[str] = set()
        node: str | None = sid
        while node is not None and node in spans and node not in seen:
            seen.add(node)
            spans[node] += own
            node = parents.get(node)
    for s in streams:
        if s.started_at is not None and s.ended_at is not None:
            s.waited = overlap(spans[s.id], s.started_at, s.ended_at)


#: A bucket of usage: counts, and dollars (None once any part of them has no known price).
Bucket = dict[str, float | None]
#: What tokens cost on a model: (prompt tokens, completion tokens, model, cached prompt
#: tokens) -> dollars, or None when the model's price is unknown.
Pricing = Callable[[int, int, str, int], float | None]


def _bucket() -> Bucket:
    return {
        "calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "tokens": 0,
        "cost_usd": 0.0,
    }


def _plus(a: float | None, b: float | None) -> float | None:
    """A sum of dollars: unknown if any part is."""
    return None if a is None or b is None else a + b


def _add(bucket: Bucket, u: UsageRecord) -> None:
    for name, value in (
        ("calls", 1),
        ("prompt_tokens", u.prompt_tokens),
        ("completion_tokens", u.completion_tokens),
        ("cached_tokens", u.cached_tokens),
        ("tokens", u.prompt_tokens + u.completion_tokens),
    ):
        bucket[name] = (bucket[name] or 0) + value
    bucket["cost_usd"] = _plus(bucket["cost_usd"], u.cost_usd)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _counterfactuals(
    usage: list[UsageRecord], premium_model: str, pricing: Pricing
) -> tuple[float | None, float | None, float | None]:
    """What the calls would have cost without caching, on the premium model with the same
    caching, and on the premium model without it."""
    uncached: float | None = 0.0
    premium_only: float | None = 0.0
    premium_uncached: float | None = 0.0
    for u in usage:
        p, c = u.prompt_tokens, u.completion_tokens
        # A call of unknown price stays unknown without caching too.
        own = pricing(p, c, u.model, 0) if u.cost_usd is not None else None
        uncached = _plus(uncached, own)
        premium_only = _plus(premium_only, pricing(p, c, premium_model, u.cached_tokens))
        premium_uncached = _plus(premium_uncached, pricing(p, c, premium_model, 0))
    return uncached, premium_only, premium_uncached


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
    spent = total["cost_usd"]
    uncached, premium_only, premium_uncached = _counterfactuals(usage, premium_model, premium_cost)
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
        "tiering_saved_usd": _rounded(_minus(premium_only, spent)),
        "cached_tokens": total["cached_tokens"],
        "uncached_usd": _rounded(uncached),
        "caching_saved_usd": _rounded(_minus(uncached, spent)),
        "premium_only_uncached_usd": _rounded(premium_uncached),
        # The models whose use has no known price (every sum they are in is None).
        "unknown_price_models": sorted({u.model for u in usage if u.cost_usd is None}),
    }
    return per_stream, section, cost


def _times(
    plan: Plan | None,
    streams: list[StreamFacts],
    started_at: float,
    ended_at: float,
    human: Spans,
) -> dict[str, float]:
    """Wall-clock time beside the sequential sum of the streams and the critical path; the
    human's waits apart, and out of every work figure."""
    top = [s for s in streams if s.parent is None]
    durations = {s.id: s.duration for s in top}
    starts = [s.started_at for s in streams if s.started_at is not None]
    ends = [s.ended_at for s in streams if s.ended_at is not None]
    execution = 0.0
    if starts and ends:
        first, last = min(starts), max(ends)
        execution = max(0.0, last - first - overlap(human, first, last))
    wall = ended_at - started_at
    waited = overlap(human, started_at, ended_at)
    return {
        "wall_clock_s": round(wall, 4),
        "human_wait_s": round(waited, 4),
        "work_s": round(max(0.0, wall - waited), 4),
        "execution_s": round(execution, 4),
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
    waits: Mapping[str, Spans] | None = None,
    human: Spans | None = None,
) -> dict[str, Any]:
    """The report. `waits`: per stream id, the spans it waited for answers to its questions;
    `human`: the spans the task waited for the human (input_required, awaiting_approval)."""
    streams = list(streams)
    human = list(human or [])
    _waited(streams, waits or {}, human)
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
                "waited_s": round(s.waited, 4),
                "usage": per_stream.get(s.id, _bucket()),
            }
            for s in streams
        ],
        "usage": usage_section,
        "cost": cost,
        "time": _times(plan, streams, started_at, ended_at, human),
        "rules": {k: v for k, v in settings.items() if k.startswith("rules.")},
        "settings": settings,
    }
    if extra:
        report.update(extra)
    return report
