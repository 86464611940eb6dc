"""Many streams in flight at once: N tasks of 5 streams under a ceiling of N x 5, with executor
calls long enough (seconds) that every stream's call is in flight together.

What it reports: the peak number of model calls in flight at once, read from the simulator's
own records (a call is in flight from the request's arrival to its answer); the daemon's
peak resident memory while they were (`RssPoller`); and the agent limit the daemon actually
ran at (`daemon/status`, polled: the governor may lower it on memory), beside the ceiling
asked for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from daemon.tools.bench.harness import TERMINAL, BenchError, Session
from daemon.tools.bench.measure import RssPoller, cpu_s, spread
from daemon.tools.simulator import CallRecord

__all__ = ["STREAMS_PER_TASK", "in_flight_scenario", "peak_in_flight", "streams_in_flight"]

#: Streams of each task (the generated plan's width).
STREAMS_PER_TASK = 5
#: How often the daemon's limit and in-flight count are read while the streams run.
STATUS_POLL_S = 0.5


def in_flight_scenario(executor_latency_s: float) -> dict[str, Any]:
    """Independent streams whose executor calls take `executor_latency_s`; the planner's and
    the orchestrator's calls are near zero, so the streams' calls start close together."""
    return {
        "name": f"in-flight-{STREAMS_PER_TASK}",
        "seed": 5,
        "latency": {"planner": 0.002, "orchestrator": 0.002, "executor": executor_latency_s},
        "completion_tokens": {"planner": 400, "orchestrator": 60, "executor": 150},
        "plan": {
            "summary": "Independent parts.",
            "generate": {"width": STREAMS_PER_TASK, "pattern": "independent", "kind": "writing"},
        },
    }


def peak_in_flight(records: Iterable[CallRecord], purpose: str | None = None) -> int:
    """The most calls (of `purpose`, or all) in flight at one moment, from their start and
    end times; a call with no end yet counts as in flight to the end."""
    edges: list[tuple[float, int]] = []
    for r in records:
        if purpose is not None and r.purpose != purpose:
            continue
        edges.append((r.started_mono, 1))
        edges.append((r.ended_mono if r.ended_mono is not None else float("inf"), -1))
    # At equal times an end sorts before a start: back to back is not overlapping.
    edges.sort()
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


class _StatusPoller:
    """`daemon/status`'s concurrency figures, read every STATUS_POLL_S while the run lasts."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.samples: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            status = await self.session.rpc("daemon/status")
            conc = status["concurrency"]
            self.samples.append(
                {
                    "limit": conc["limit"],
                    "in_flight": conc["in_flight"],
                    "waiting": conc["waiting"],
                    "reason": conc["reason"],
                }
            )
            await asyncio.sleep(STATUS_POLL_S)

    async def __aenter__(self) -> _StatusPoller:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def figures(self) -> dict[str, Any]:
        if not self.samples:
            return {"limit_min": None, "limit_max": None, "daemon_in_flight_peak": None}
        peak = max(self.samples, key=lambda s: s["in_flight"])
        lowest = min(self.samples, key=lambda s: s["limit"])
        return {
            "limit_min": lowest["limit"],
            "limit_max": max(s["limit"] for s in self.samples),
            "limit_reason_at_min": lowest["reason"],
            "daemon_in_flight_peak": peak["in_flight"],
            "limit_at_peak": peak["limit"],
            "waiting_max": max(s["waiting"] for s in self.samples),
        }


async def _submit_all(session: Session, n: int) -> tuple[list[str], list[str]]:
    """n task/submit at once: the ids and the errors."""

    async def one(i: int) -> str:
        tid, _ = await session.submit(f"Write a five-part checklist, in-flight item {i + 1}")
        return tid

    done = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    ids = [d for d in done if isinstance(d, str)]
    errors = [repr(d)[:300] for d in done if not isinstance(d, str)]
    return ids, errors


async def _until_ended(session: Session, ids: list[str], limit_s: float) -> None:
    """Until every one of `ids` has ended. The daemon is asked only when the simulator says
    they may have: every merge answered, or no call in flight for a second (a failed task
    has no merge)."""
    wanted = set(ids)
    deadline = time.monotonic() + limit_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        records = [r for r in session.sim.sim.state.records if r.task_id in wanted]
        merged = {r.task_id for r in records if r.purpose == "merge" and r.status is not None}
        if any(r.status is None for r in records):
            quiet_since = time.monotonic()
        if len(merged) >= len(wanted) or time.monotonic() - quiet_since > 1.0:
            views = (await session.rpc("task/list", {"limit": len(ids) + 50}))["tasks"]
            if sum(1 for v in views if v["id"] in wanted and v["state"] in TERMINAL) >= len(ids):
                return
            quiet_since = time.monotonic()
        await asyncio.sleep(0.25)
    raise BenchError(f"{len(ids)} in-flight tasks did not all end within {limit_s:.0f}s")


async def streams_in_flight(session: Session) -> dict[str, Any]:
    """`in_flight_tasks` tasks of 5 streams at once under a ceiling of all their streams."""
    s, proc = session.s, session.proc
    n = s.in_flight_tasks
    streams = n * STREAMS_PER_TASK
    ceiling = streams
    await session.rpc("config/set", {"key": "concurrency.ceiling", "value": ceiling})
    session.use(in_flight_scenario(s.in_flight_latency_s))
    rss0, cpu0 = proc.memory_info().rss, cpu_s(proc)
    with RssPoller(proc) as rss:
        async with _StatusPoller(session) as status:
            t0 = time.time()
            ids, errors = await _submit_all(session, n)
            await _until_ended(session, ids, s.workload_timeout_s)
            duration = time.time() - t0
    cpu = cpu_s(proc) - cpu0
    records = [r for r in session.records() if r.task_id in set(ids)]
    views = (await session.rpc("task/list", {"limit": n + 50}))["tasks"]
    completed = sum(1 for v in views if v["id"] in set(ids) and v["state"] == "completed")
    bad_calls = sum(1 for r in records if r.status != 200)
    session.reset_sim()
    return {
        "tasks": n,
        "streams_per_task": STREAMS_PER_TASK,
        "streams": streams,
        "ceiling": ceiling,
        "executor_latency_s": s.in_flight_latency_s,
        # From the simulator's records: what really ran at once.
        "peak_calls_in_flight": peak_in_flight(records),
        "peak_executor_calls_in_flight": peak_in_flight(records, "execute"),
        # How long the daemon took to get every executor call out: the calls overlap all
        # together only if they last longer than this.
        "executor_start_spread_s": spread(
            r.started_wall for r in records if r.purpose == "execute"
        ),
        **status.figures(),
        "rss_before_mib": rss0 / 2**20,
        "peak_rss_mib": max(rss.peak, rss0) / 2**20,
        "completed": completed,
        "errors": len(errors) + (len(ids) - completed) + bad_calls,
        "error_samples": errors[:3],
        "model_calls": len(records),
        "duration_s": duration,
        "daemon_cpu_ms_per_stream": cpu / streams * 1000,
    }
