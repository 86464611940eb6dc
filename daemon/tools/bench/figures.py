"""The figures of one workload, from the finished task, its report, the simulator's call
records and the baselines' runs.

The execution phase runs from the first stream started to the last stream's first pass
reviewed (a conflict redo comes later, in the review phase). The physical bound is
max(critical path, total work / concurrency) with each stream's work taken from the latencies
the simulator drew for it. A tierd stream is its executor call plus the orchestrator's review
of it (a dependant starts only after the review), so `bound_s` counts both;
`executor_bound_s` counts executor calls alone, the floor for work without review.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daemon.tools.bench.measure import spread
from daemon.tools.bench.workloads import Workload
from daemon.tools.simulator import CallRecord
from roles.models.costs import cost_of
from roles.plan.schema import Plan
from roles.plan.validator import critical_path

if TYPE_CHECKING:
    from daemon.tools.bench.baselines import BaselineRun

__all__ = ["CONFLICT_ROUND", "WorkloadRun", "completion_floor_usd", "workload_figures"]

#: Conflict redos use review rounds 100 and up (the engine's numbering); below is the first pass.
CONFLICT_ROUND = 100
#: The calls of a stream's first pass: its executor call, the review, the orchestrator's fix.
FIRST_PASS_PURPOSES = ("execute", "review", "fix")


@dataclass
class WorkloadRun:
    """What running one workload by tierd and by both baselines gave, before any figure."""

    workload: Workload
    task: dict[str, Any]
    plan: Plan
    #: The simulator's records of tierd's calls (taken before the baselines ran).
    records: list[CallRecord]
    #: Wall-clock time of task/submit.
    submitted: float
    #: The daemon's CPU seconds from submit to the end of the task.
    cpu_s: float
    #: Wall-clock seconds from submit to the end of the task.
    busy_s: float
    #: CPU seconds of the daemon's event-loop thread and of its other threads.
    cpu_split: tuple[float, float]
    sequential: BaselineRun
    langgraph: BaselineRun
    #: The LangGraph functional-API program (start-when-ready, in process, not durable).
    functional: BaselineRun
    #: The dependency levels of the plan (the LangGraph baseline's barriers).
    levels: list[list[str]]


@dataclass
class _FirstPass:
    """The task's top-level streams and their first-pass calls."""

    mine: list[CallRecord]
    ok: list[CallRecord]
    top: list[dict[str, Any]]
    calls: dict[str, list[CallRecord]]
    #: Streams a conflict check sent back (their first pass ended before their final end).
    redone: set[str | None]
    start: float
    end: float

    @classmethod
    def of(cls, run: WorkloadRun) -> _FirstPass:
        tid = run.task["id"]
        mine = [r for r in run.records if r.task_id == tid]
        ok = [r for r in mine if r.status == 200]
        top = [s for s in run.task["streams"] if s["parent"] is None]
        calls = {
            s["id"]: [
                r
                for r in ok
                if r.stream_id == s["id"]
                and r.round < CONFLICT_ROUND
                and r.purpose in FIRST_PASS_PURPOSES
            ]
            for s in top
        }
        redone = {r.stream_id for r in ok if r.round >= CONFLICT_ROUND}

        def first_pass_end(s: dict[str, Any]) -> float:
            if s["id"] in redone and calls[s["id"]]:
                return max(float(r.ended_wall or 0.0) for r in calls[s["id"]])
            return float(s["ended_at"])

        start = min(float(s["started_at"]) for s in top)
        end = max(first_pass_end(s) for s in top)
        return cls(mine, ok, top, calls, redone, start, end)

    def work(self, *purposes: str) -> dict[str, float]:
        """Each stream's simulated latency over its first-pass calls of these purposes."""
        wanted = purposes or FIRST_PASS_PURPOSES
        return {
            sid: sum(r.latency_s for r in rs if r.purpose in wanted)
            for sid, rs in self.calls.items()
        }


def _bound(plan: Plan, work: dict[str, float], concurrency: int) -> tuple[float, float, float]:
    """(physical bound, critical path, total work) of streams taking `work` seconds each."""
    cp = critical_path(plan, work)
    total = sum(work.values())
    return max(cp, total / concurrency), cp, total


def _execution(run: WorkloadRun, fp: _FirstPass, concurrency: int) -> dict[str, Any]:
    """tierd's execution phase beside the baselines', the bound and the ideal baselines."""
    work, exec_work = fp.work(), fp.work("execute")
    tierd_s = fp.end - fp.start
    bound_s, cp_s, total_work_s = _bound(run.plan, work, concurrency)
    exec_bound_s, exec_cp_s, _ = _bound(run.plan, exec_work, concurrency)
    return {
        "tierd_s": tierd_s,
        "sequential_s": run.sequential.wall_s,
        "langgraph_s": run.langgraph.wall_s,
        "functional_s": run.functional.wall_s,
        "bound_s": bound_s,
        "critical_path_s": cp_s,
        "total_work_s": total_work_s,
        "executor_bound_s": exec_bound_s,
        # What the baselines would take with no overhead at all, on the same latencies.
        "langgraph_ideal_s": sum(max(work[sid] for sid in level) for level in run.levels),
        "sequential_ideal_s": sum(exec_work.values()),
        "executor_critical_path_s": exec_cp_s,
        "concurrency": concurrency,
        "vs_bound": tierd_s / bound_s - 1 if bound_s else None,
        "vs_functional": tierd_s / run.functional.wall_s - 1 if run.functional.wall_s else None,
    }


def _phases(run: WorkloadRun, fp: _FirstPass) -> dict[str, Any]:
    """Planning, review and merge time, and how fast the daemon fanned out."""
    task, report = run.task, run.task["report"]
    merge_calls = [r for r in fp.ok if r.purpose == "merge"]
    merge_start = min((r.started_wall for r in merge_calls), default=fp.end)
    first_call = min((r.started_wall for r in fp.mine), default=run.submitted)
    roots = [s for s in fp.top if not s["depends_on"]]
    return {
        "report_execution_s": report["time"]["execution_s"],
        "wall_clock_s": report["time"]["wall_clock_s"],
        "planning_s": fp.start - float(task["created_at"]),
        "review_s": max(0.0, merge_start - fp.end),
        "merge_s": max(0.0, float(task["updated_at"]) - merge_start),
        "stream_review_s": sum(fp.work("review").values()),
        "conflict_redos": sorted(x for x in fp.redone if x),
        # How long the daemon took to get every stream that needs nothing started, and
        # their first executor calls to the model: its own work while fanning out.
        "root_start_spread_s": spread(float(s["started_at"]) for s in roots),
        "root_first_call_spread_s": spread(
            min(
                (r.started_wall for r in fp.calls[s["id"]] if r.purpose == "execute"),
                default=fp.start,
            )
            for s in roots
        ),
        "submit_to_first_call_ms": (first_call - run.submitted) * 1000,
        "calls": len(fp.mine),
    }


def _tokens(run: WorkloadRun) -> dict[str, Any]:
    """tierd's tokens beside the baselines', and the premium roles' shares of them."""
    usage = run.task["report"]["usage"]
    per_purpose = usage["per_purpose"]
    total = int(usage["total"]["tokens"])
    orchestration = int(usage["orchestration_tokens"])
    seq = run.sequential.tokens

    def share(*purposes: str) -> float:
        tokens = sum(per_purpose.get(p, {}).get("tokens", 0) for p in purposes)
        return int(tokens) / total if total else 0.0

    prompt = int(usage["total"].get("prompt_tokens", 0))
    cached = int(usage["total"].get("cached_tokens", 0))
    return {
        "tokens": total,
        "prompt_tokens": prompt,
        # Prompt tokens the provider's prompt cache served (the simulator's, as OpenAI's).
        "cached_tokens": cached,
        "cached_share": cached / prompt if prompt else 0.0,
        "executor_tokens": int(usage["per_role"].get("executor", {}).get("tokens", 0)),
        "sequential_tokens": seq,
        "langgraph_tokens": run.langgraph.tokens,
        "functional_tokens": run.functional.tokens,
        "orchestration_tokens": orchestration,
        "orchestration_share": usage["orchestration_share"],
        "planner_share": share("plan"),
        "review_share": share("review", "conflicts", "fix"),
        "merge_share": share("merge"),
        "token_check": {
            "expected": seq + orchestration,
            "deviation": (total - orchestration - seq) / seq if seq else 0.0,
        },
    }


def completion_floor_usd(calls: Iterable[CallRecord]) -> float | None:
    """What the calls' completions alone cost, each on the model that wrote it (None: a
    model's price is unknown).

    No prompt layout, cache or shorter context reaches these tokens: with the plan and every
    review on the premium tier, as the design has them, a tiered bill is never below this.
    Beside the premium-only cost it shows how far down tiering could go at all."""
    total = 0.0
    for call in calls:
        dollars = cost_of(0, call.completion_tokens, call.model)
        if dollars is None:
            return None
        total += dollars
    return total


def _cost(run: WorkloadRun, fp: _FirstPass) -> dict[str, Any]:
    """What the task cost, with the provider's prompt caching and without it, beside the same
    calls all on the premium model.

    The target's baseline (`premium_only_cost_usd`) prices each call's prompt, cached and
    completion tokens on the premium model: the same prompts sent to one model would be
    cached just the same (the cache is per model, and every call's prefix would be there for
    the next), so caching lowers both sides and the ratio measures tiering alone. Comparing
    the cached tiered cost with an uncached premium-only one would credit tiering with what
    caching saved. `cost_by_purpose` says where the dollars went (plan, review, execute...).
    """
    report = run.task["report"]
    cost = report["cost"]
    total, premium = float(cost["total_usd"]), float(cost["premium_only_usd"])
    uncached = float(cost.get("uncached_usd") or total)
    premium_uncached = float(cost.get("premium_only_uncached_usd") or premium)
    per_purpose = report["usage"]["per_purpose"]
    floor = completion_floor_usd(fp.ok)
    return {
        "cost_usd": total,
        "premium_only_cost_usd": premium,
        "cost_ratio": total / premium if premium else None,
        "uncached_cost_usd": uncached,
        "premium_only_uncached_cost_usd": premium_uncached,
        "uncached_cost_ratio": uncached / premium_uncached if premium_uncached else None,
        "caching_saved_usd": uncached - total,
        "completion_floor_usd": floor,
        "completion_floor_ratio": floor / premium if floor is not None and premium else None,
        "cost_by_purpose": {
            purpose: float(bucket.get("cost_usd") or 0.0)
            for purpose, bucket in sorted(per_purpose.items())
        },
    }


def _cpu(run: WorkloadRun, streams: int, idle_cpu_per_s: float) -> dict[str, Any]:
    """The daemon's CPU per stream, net of what it burns idle over the same time."""
    idle = idle_cpu_per_s * run.busy_s
    cpu_net = max(0.0, run.cpu_s - idle)
    return {
        "daemon_cpu_s": run.cpu_s,
        "daemon_cpu_idle_s": idle,
        "daemon_cpu_ms_per_stream": cpu_net / streams * 1000,
        "daemon_cpu_ms_per_stream_raw": run.cpu_s / streams * 1000,
        "daemon_cpu_ms_per_stream_loop_thread": run.cpu_split[0] / streams * 1000,
        "daemon_cpu_ms_per_stream_other_threads": run.cpu_split[1] / streams * 1000,
    }


def workload_figures(run: WorkloadRun, concurrency: int, idle_cpu_per_s: float) -> dict[str, Any]:
    """Every figure of one workload (the keys tests/daemon/tools/test_bench.py checks)."""
    fp = _FirstPass.of(run)
    wl = run.workload
    streams = len(fp.top)
    return {
        "name": wl.name,
        "task_id": run.task["id"],
        "scenario": wl.scenario,
        "options": wl.options,
        "streams": streams,
        "levels": len(run.levels),
        **_execution(run, fp, concurrency),
        **_phases(run, fp),
        **_tokens(run),
        **_cost(run, fp),
        **_cpu(run, streams, idle_cpu_per_s),
    }
