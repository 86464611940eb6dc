"""The once-per-run measurements of the daemon's API on near-zero model latencies:
task/submit -> first model call, task/get throughput with many concurrent clients, the
start-up of `tierd status`, and many tasks submitted at once under a high ceiling (then many
streams in flight at once, `in_flight.py`).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon.tools.bench.harness import TERMINAL, BenchError, Session
from daemon.tools.bench.in_flight import STREAMS_PER_TASK, streams_in_flight
from daemon.tools.bench.measure import RssPoller, cpu_s, pct, summary_ms
from daemon.tools.bench.rpc_load import rpc_load
from daemon.tools.bench.workloads import tiny_scenario

__all__ = ["first_call_latency", "scale", "status_startup", "task_get_load"]


async def _first_call_of(session: Session, task_id: str, limit_s: float = 30.0) -> float:
    """The wall-clock start of the task's first call to reach the simulator."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        first = next((r for r in session.sim.sim.state.records if r.task_id == task_id), None)
        if first is not None:
            return first.started_wall
        await asyncio.sleep(0.001)
    raise BenchError(f"no model call for task {task_id} within {limit_s:.0f}s")


async def first_call_latency(session: Session) -> dict[str, Any]:
    """task/submit -> the first model call reaching the simulator, one task at a time."""
    session.use(tiny_scenario(1))
    lat, submit_rtt = [], []
    for i in range(session.s.latency_tasks):
        t0 = time.time()
        tid, _ = await session.submit(f"Write a short note number {i + 1}")
        submit_rtt.append(time.time() - t0)
        lat.append(await _first_call_of(session, tid) - t0)
        task = await session.wait_task(tid, 60)
        if task["state"] != "completed":
            raise BenchError(f"latency task {task['state']}: {task.get('error')}")
        session.reset_sim()
    return {
        "submit_to_first_call_ms": summary_ms(lat),
        "submit_rtt_ms": summary_ms(submit_rtt),
    }


async def task_get_load(session: Session, task_id: str) -> dict[str, Any]:
    """task/get of one ended task with N concurrent clients, each on its own kept-alive
    connection, all at once (`rpc_load`: an HTTP client light enough not to be what is
    measured); every answer checked to be that task's. The daemon's CPU per request beside."""
    daemon = session.daemon
    cpu_before = cpu_s(session.proc)
    load = await rpc_load(
        daemon.url,
        daemon.token,
        "task/get",
        {"task_id": task_id},
        clients=session.s.api_clients,
        requests_per_client=session.s.api_requests_per_client,
        check=lambda result: isinstance(result, dict) and result.get("id") == task_id,
    )
    cpu = cpu_s(session.proc) - cpu_before
    ms = summary_ms(load.latencies)
    requests = len(load.latencies)
    return {
        "clients": session.s.api_clients,
        "requests": requests,
        "errors": load.errors,
        "first_error": load.first_error,
        "response_bytes": load.response_bytes,
        "requests_per_s": requests / load.elapsed_s if load.elapsed_s else 0.0,
        "p50_ms": ms["p50"],
        "p99_ms": ms["p99"],
        "mean_ms": ms["mean"],
        "max_ms": ms["max"],
        # Includes the warm-up's first answers (one per client): a little over the truth.
        "daemon_cpu_us_per_request": cpu / requests * 1e6 if requests else None,
    }


def status_startup(session: Session) -> dict[str, Any]:
    """Wall-clock time of `tierd status` (a fresh process each time); blocks."""
    exe = shutil.which("tierd", path=str(Path(sys.executable).parent))
    cmd = [exe, "status"] if exe else [sys.executable, "-m", "daemon.cli", "status"]
    times = []
    for _ in range(session.s.status_runs):
        t0 = time.perf_counter()
        done = subprocess.run(
            cmd, env=session.daemon.env, capture_output=True, timeout=60, check=False
        )
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise BenchError(
                f"`tierd status` exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-500:]}"
            )
    return {
        "runs": len(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "command": " ".join(Path(c).name for c in cmd[:1]) + " " + " ".join(cmd[1:]),
    }


async def _submit_burst(session: Session, n: int) -> tuple[list[str], list[float], list[str]]:
    """n task/submit at once: the ids, each submit's latency, and the errors."""
    ids: list[str] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        try:
            tid, _ = await session.submit(f"Write a five-part checklist, batch item {i + 1}")
            ids.append(tid)
        except Exception as exc:
            errors.append(repr(exc)[:300])
        latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(one(i) for i in range(n)))
    return ids, latencies, errors


async def _until_ended(session: Session, ended_before: int, count: int) -> None:
    """Until `count` more tasks have ended than had before (or the workload timeout)."""
    deadline = time.monotonic() + session.s.workload_timeout_s
    while time.monotonic() < deadline:
        counts = (await session.rpc("daemon/status"))["tasks"]
        if sum(counts.get(s, 0) for s in TERMINAL) - ended_before >= count:
            return
        await asyncio.sleep(0.25)


async def scale(session: Session) -> dict[str, Any]:
    """N tasks of 5 streams submitted at once under a high ceiling; then, under `in_flight`,
    M tasks of 5 streams all in flight at once under a ceiling of all their streams."""
    s, proc = session.s, session.proc
    n, width = s.scale_tasks, s.scale_streams
    await session.rpc("config/set", {"key": "concurrency.ceiling", "value": s.scale_ceiling})
    session.use(tiny_scenario(width))
    before = (await session.rpc("daemon/status"))["tasks"]
    ended_before = sum(before.get(st, 0) for st in TERMINAL)
    rss0 = proc.memory_info().rss
    cpu0 = cpu_s(proc)
    with RssPoller(proc) as rss:
        t0 = time.time()
        ids, submit_lat, submit_errors = await _submit_burst(session, n)
        submitted_s = time.time() - t0
        await _until_ended(session, ended_before, len(ids))
        cpu = cpu_s(proc) - cpu0
    views = (await session.rpc("task/list", {"limit": min(500, n + 50)}))["tasks"]
    wanted = set(ids)
    mine = {v["id"]: v for v in views if v["id"] in wanted}
    completed = [v for v in mine.values() if v["state"] == "completed"]
    not_completed = len(ids) - len(completed)
    last = max((float(v["updated_at"]) for v in completed), default=time.time())
    records = session.records()
    bad_calls = sum(1 for r in records if r.status not in (200, None))
    session.reset_sim()
    figures = {
        "tasks": n,
        "streams_per_task": width,
        "ceiling": s.scale_ceiling,
        "completed": len(completed),
        "errors": len(submit_errors) + not_completed + bad_calls,
        "submit_errors": len(submit_errors),
        "tasks_not_completed": not_completed,
        "failed_model_calls": bad_calls,
        "model_calls": len(records),
        "error_samples": submit_errors[:3],
        "duration_s": last - t0,
        "submit_burst_s": submitted_s,
        "tasks_per_s": len(completed) / (last - t0) if last > t0 else 0.0,
        "submit_p50_ms": pct(submit_lat, 50) * 1000,
        "submit_p99_ms": pct(submit_lat, 99) * 1000,
        "rss_before_mib": rss0 / 2**20,
        "peak_rss_mib": max(rss.peak, rss0) / 2**20,
        "daemon_cpu_s": cpu,
        "daemon_cpu_ms_per_stream": cpu / (n * width) * 1000,
    }
    session.log(
        f"{s.in_flight_tasks} tasks x {STREAMS_PER_TASK} streams in flight at once, "
        f"executor calls of {s.in_flight_latency_s:g} s"
    )
    return {**figures, "in_flight": await streams_in_flight(session)}
