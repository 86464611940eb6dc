"""The figures of the code workload, from the finished task and the simulator's call records.

A code stream is a tool loop in a git worktree: model calls, the commands the executor runs
(the tests, in the sandbox), tierd's own test run after the round, and tierd's machinery
around them (worktree, commits, diffs, saving every step). Per stream: its wall time, the
simulated latency of its model calls, its commands and its test run; the rest is tierd's
machinery and each model call's cost beyond its simulated latency (litellm, HTTP). The
physical bound counts a stream's work as its model latency, its commands and its test run,
so that rest lands in the gap between tierd and the bound.

The two peer baselines do not apply here: they replay text executors (`baselines.py`),
while a code stream needs worktrees, tools and a sandbox. Their columns say so (None in the
JSON, `n/a` in the tables); beside tierd stands the sum of its own streams' times instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.tools.simulator import CallRecord
from roles.plan.schema import Plan
from roles.plan.validator import critical_path

__all__ = ["NO_BASELINE", "CodeRun", "code_figures"]

NO_BASELINE = (
    "the sequential-agent and LangGraph Send baselines replay text executors; a code stream is "
    "a tool loop in a git worktree with sandboxed test runs, which they do not do: no peer "
    "baseline. 'sequential' is the sum of tierd's own stream times."
)


@dataclass
class CodeRun:
    """What running the code workload by tierd gave, before any figure."""

    task: dict[str, Any]
    plan: Plan
    records: list[CallRecord]
    #: Wall-clock time of task/submit.
    submitted: float
    #: The daemon's CPU seconds from submit to the end of the task (its own process: git,
    #: bubblewrap and the tests are children, whose CPU the kernel does not reliably pass up
    #: through bubblewrap's namespaces, so they are not counted).
    cpu_s: float
    #: Wall-clock seconds from submit to the end of the task.
    busy_s: float
    levels: int


def _commands_s(code: dict[str, Any]) -> float:
    return sum(float(c.get("duration_s") or 0.0) for c in code.get("commands") or [])


def _per_stream(run: CodeRun, ok: list[CallRecord]) -> dict[str, dict[str, Any]]:
    out = {}
    for s in run.task["streams"]:
        if s["parent"] is not None:
            continue
        code = s.get("code") or {}
        stream_s = float(s["ended_at"]) - float(s["started_at"])
        model_s = sum(r.latency_s for r in ok if r.stream_id == s["id"])
        commands_s = _commands_s(code)
        test_run_s = float((code.get("test_run") or {}).get("duration_s") or 0.0)
        out[s["id"]] = {
            "depends_on": list(s["depends_on"]),
            "rounds": s["rounds"],
            "verdict": s["verdict"],
            "files": list(code.get("files") or []),
            "steps": code.get("steps"),
            "stream_s": stream_s,
            "model_s": model_s,
            "commands_s": commands_s,
            "test_run_s": test_run_s,
            "work_s": model_s + commands_s + test_run_s,
            # The rest: tierd's machinery (worktree, commits, diffs, saved steps, prompts) and
            # each model call's cost beyond its simulated latency (litellm, HTTP).
            "other_s": stream_s - model_s - commands_s - test_run_s,
        }
    return out


def _tokens(run: CodeRun) -> dict[str, Any]:
    usage = run.task["report"]["usage"]
    per_purpose = usage["per_purpose"]
    total = int(usage["total"]["tokens"])

    def share(*purposes: str) -> float:
        tokens = sum(per_purpose.get(p, {}).get("tokens", 0) for p in purposes)
        return int(tokens) / total if total else 0.0

    cost = run.task["report"]["cost"]
    total_usd, premium = float(cost["total_usd"]), float(cost["premium_only_usd"])
    return {
        "tokens": total,
        "executor_tokens": int(usage["per_role"].get("executor", {}).get("tokens", 0)),
        "sequential_tokens": None,
        "langgraph_tokens": None,
        "orchestration_tokens": int(usage["orchestration_tokens"]),
        "orchestration_share": usage["orchestration_share"],
        "planner_share": share("plan"),
        "review_share": share("review", "conflicts", "fix"),
        "merge_share": share("merge"),
        "cost_usd": total_usd,
        "premium_only_cost_usd": premium,
        "cost_ratio": total_usd / premium if premium else None,
    }


def _cpu(run: CodeRun, streams: int, idle_cpu_per_s: float) -> dict[str, Any]:
    idle = idle_cpu_per_s * run.busy_s
    return {
        "daemon_cpu_s": run.cpu_s,
        "daemon_cpu_ms_per_stream": max(0.0, run.cpu_s - idle) / streams * 1000,
        "daemon_cpu_ms_per_stream_raw": run.cpu_s / streams * 1000,
    }


def code_figures(run: CodeRun, concurrency: int, idle_cpu_per_s: float) -> dict[str, Any]:
    """Every figure of the code workload but the git and sandbox replay (`code_overhead`)."""
    task, report = run.task, run.task["report"]
    tid = task["id"]
    mine = [r for r in run.records if r.task_id == tid]
    ok = [r for r in mine if r.status == 200]
    per_stream = _per_stream(run, ok)
    top = [s for s in task["streams"] if s["parent"] is None]
    start = min(float(s["started_at"]) for s in top)
    end = max(float(s["ended_at"]) for s in top)
    finished = float(task["created_at"]) + float(report["time"]["wall_clock_s"])
    work = {sid: f["work_s"] for sid, f in per_stream.items()}
    cp = critical_path(run.plan, work)
    total = sum(work.values())
    bound = max(cp, total / concurrency)
    tierd_s = end - start
    first_call = min((r.started_wall for r in mine), default=run.submitted)
    result = (task.get("code") or {}).get("result") or {}
    streams = len(top)
    return {
        "name": "code",
        "task_id": tid,
        "scenario": "bench_code",
        "streams": streams,
        "levels": run.levels,
        "tierd_s": tierd_s,
        "bound_s": bound,
        "critical_path_s": cp,
        "total_work_s": total,
        "concurrency": concurrency,
        "vs_bound": tierd_s / bound - 1 if bound else None,
        "sequential_s": None,
        "langgraph_s": None,
        "sequential_sum_s": sum(f["stream_s"] for f in per_stream.values()),
        "baselines": NO_BASELINE,
        "wall_clock_s": report["time"]["wall_clock_s"],
        "planning_s": start - float(task["created_at"]),
        # Each stream's review is inside the stream; no conflict check runs for code.
        "review_s": None,
        # After the last stream: the branches merged, the merged result's tests.
        "merge_s": max(0.0, finished - end),
        "final_tests_s": float((result.get("tests") or {}).get("duration_s") or 0.0),
        "model_s": sum(f["model_s"] for f in per_stream.values()),
        "commands_s": sum(f["commands_s"] for f in per_stream.values()),
        "test_runs_s": sum(f["test_run_s"] for f in per_stream.values()),
        "other_s": sum(f["other_s"] for f in per_stream.values()),
        "submit_to_first_call_ms": (first_call - run.submitted) * 1000,
        "calls": len(mine),
        "tool_calls": sum(len(r.tool_calls or []) for r in ok),
        **_tokens(run),
        **_cpu(run, streams, idle_cpu_per_s),
        "per_stream": per_stream,
    }
