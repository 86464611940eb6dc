"""The code workload on a three-node local Ray cluster, beside the local backend's run.

After the code workload has run on the bench's daemon (the local backend: worktrees and
commands on this machine), the bench starts a real local Ray cluster (`ray_cluster.py`: a head
that takes no stream and three worker nodes of two CPUs), a second daemon whose config is the
first one's plus `[executors] backend = "ray"` on that cluster, on the same simulator, and runs
the same scenario there on a freshly generated repository of the same size. Each stream's
worktree, tool calls and sandboxed commands are then on a node; its model calls stay in the
daemon.

The daemon's Ray driver connects with its first code request, so a one-stream code task warms
the second daemon up first (its time is reported on its own). Then the figures of both runs
(`code_figures.py`) are set side by side (`compare_runs`): wall clock, per-stream time and the
per-stream overhead (ray − local, paired by stream, and their ratio), the share of it outside
model calls and commands ("rest"), the daemon's CPU per stream; beside them the nodes the
streams ran on (their record's `ray://<node><path>`), the merge check, and whether the merged
tree equals the local run's (both repositories are generated identically).

This process never connects to the cluster as a Ray driver: the daemon's driver does. Without
Ray (the extra `tierd[ray]`), bubblewrap, pytest or git, or without the local run to compare
with, the figures say why and the bench goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import mean
from typing import Any

import psutil
from rich.markup import escape

from daemon.tools.bench.code_repo import make_repo, project_test_command
from daemon.tools.bench.code_workload import (
    blobs,
    cleaned_task,
    code_unavailable,
    merged_check,
    run_code_task,
)
from daemon.tools.bench.harness import BenchError, DaemonHandle, Session, write_config
from daemon.tools.bench.measure import cpu_s
from daemon.tools.bench.workloads import CODE_RAY
from daemon.tools.ray_cluster import local_ray_cluster

__all__ = ["NODE_CPUS", "WORKER_NODES", "compare_runs", "run_code_ray", "stream_nodes"]

WORKER_NODES = 3
NODE_CPUS = 2
RAY_PREFIX = "ray://"
#: How long the Ray daemon may take to stop (its driver, the driver's workers) before SIGKILL.
STOP_GRACE_S = 15.0
#: The Ray driver's module: the daemon's child process that talks to the cluster.
DRIVER_MODULE = "daemon.engine.code.ray.bridge_main"
#: One stream writing one module: the daemon's Ray driver connects with its first request.
WARM_UP_SCENARIO: dict[str, Any] = {
    "name": "bench-ray-warm-up",
    "seed": 5,
    "latency": {"planner": 0.002, "orchestrator": 0.002, "executor": 0.005},
    "completion_tokens": {"planner": 400, "orchestrator": 60, "executor": 150},
    "plan": {
        "summary": "One small module.",
        "streams": [
            {
                "id": "warm",
                "title": "Warm-up module",
                "job": "Write kit/warm.py.",
                "output_definition": "kit/warm.py",
                "ownership": ["kit/warm.py"],
                "kind": "other",
            }
        ],
    },
    "code": {
        "streams": {
            "warm": [
                {"tool": "write_file", "args": {"path": "kit/warm.py", "content": '"""W."""\n'}},
                {"tool": "finish", "args": {"summary": "kit/warm.py written"}},
            ]
        }
    },
}
IdleCpu = Callable[[Session], Awaitable[float]]


def _pair(local: float | None, ray: float | None) -> dict[str, float | None]:
    return {"local": local, "ray": ray}


def compare_runs(local: dict[str, Any], ray: dict[str, Any]) -> dict[str, Any]:
    """The two runs' figures (`code_figures`) side by side, and the per-stream overhead of
    Ray: each stream's time on Ray minus the same stream's locally, in ms (its mean and max
    over the streams both runs have), and the ratio of the mean stream times."""
    lp, rp = local["per_stream"], ray["per_stream"]
    sids = [sid for sid in lp if sid in rp]
    if not sids:
        raise ValueError("the two runs have no stream in common")
    local_s = [float(lp[sid]["stream_s"]) for sid in sids]
    ray_s = [float(rp[sid]["stream_s"]) for sid in sids]
    per_stream = {
        sid: {
            "local_s": lp[sid]["stream_s"],
            "ray_s": rp[sid]["stream_s"],
            "overhead_ms": (rp[sid]["stream_s"] - lp[sid]["stream_s"]) * 1000,
            "rest_overhead_ms": (rp[sid]["other_s"] - lp[sid]["other_s"]) * 1000,
        }
        for sid in sids
    }
    over = [f["overhead_ms"] for f in per_stream.values()]
    local_mean, ray_mean = mean(local_s), mean(ray_s)
    return {
        "streams": len(sids),
        "wall_clock_s": _pair(local["wall_clock_s"], ray["wall_clock_s"]),
        "tierd_s": _pair(local["tierd_s"], ray["tierd_s"]),
        "stream_s_mean": _pair(local_mean, ray_mean),
        "stream_s_max": _pair(max(local_s), max(ray_s)),
        "rest_s_mean": _pair(
            mean(float(lp[sid]["other_s"]) for sid in sids),
            mean(float(rp[sid]["other_s"]) for sid in sids),
        ),
        "daemon_cpu_ms_per_stream": _pair(
            local.get("daemon_cpu_ms_per_stream"), ray.get("daemon_cpu_ms_per_stream")
        ),
        "overhead_ms_per_stream_mean": mean(over),
        "overhead_ms_per_stream_max": max(over),
        "overhead_ratio": ray_mean / local_mean if local_mean else None,
        "rest_overhead_ms_per_stream_mean": mean(
            f["rest_overhead_ms"] for f in per_stream.values()
        ),
        "per_stream": per_stream,
    }


def stream_nodes(task: dict[str, Any]) -> dict[str, str]:
    """stream id -> the id of the Ray node its worktree was on (`ray://<node><path>`)."""
    nodes = {}
    for s in task["streams"]:
        where = str((s.get("code") or {}).get("worktree") or "")
        if s["parent"] is None and where.startswith(RAY_PREFIX):
            nodes[s["id"]] = where[len(RAY_PREFIX) :].split("/", 1)[0]
    return nodes


async def _unavailable(workdir: Path, local: dict[str, Any] | None) -> str | None:
    """Why the Ray run cannot be done here (naming the package), or None."""
    if importlib.util.find_spec("ray") is None:
        return "the code workload on a Ray cluster needs Ray: install 'tierd[ray]'"
    if local is None:
        return "it compares with the local code workload, which was left out (--skip code)"
    if "not_run" in local:
        return f"the local code workload did not run: {local['not_run']}"
    return await code_unavailable(workdir)


async def _tree_differences(local: dict[str, Any], repo: Path, head: str) -> list[str]:
    """The paths whose blob differs between the local run's result and this one's."""
    mine = await blobs(repo, head)
    theirs = await blobs(Path(local["repo"]["path"]), local["result"]["head"])
    return sorted(p for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p))


def _driver(proc: psutil.Process) -> psutil.Process | None:
    """The daemon's Ray driver process, once it runs."""
    for child in proc.children(recursive=True):
        try:
            if DRIVER_MODULE in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


async def _warm_up(session: Session, workdir: Path) -> float:
    """A one-stream code task (the Ray driver connects); its wall-clock seconds."""
    repo = workdir / "kit-ray-warm-up"
    await asyncio.to_thread(make_repo, repo, 0)
    session.use(WARM_UP_SCENARIO)
    t0 = time.monotonic()
    tid, _ = await session.submit("Write kit/warm.py", repo=str(repo))
    task = await session.wait_task(tid, session.s.workload_timeout_s)
    session.reset_sim()
    if task["state"] != "completed":
        raise BenchError(f"code-ray: the warm-up task {task['state']}: {task.get('error')}")
    await cleaned_task(session, tid)
    return time.monotonic() - t0


async def _ray_run(session: Session, workdir: Path, idle_cpu_per_s: float) -> dict[str, Any]:
    """The code workload on the Ray daemon: its figures, task, repository and driver CPU."""
    driver = _driver(session.proc)
    driver0 = cpu_s(driver) if driver else 0.0
    task, figures = await run_code_task(session, workdir / "kit-ray", CODE_RAY, idle_cpu_per_s)
    driver_cpu = cpu_s(driver) - driver0 if driver and driver.is_running() else None
    streams = figures["streams"]
    return {
        "figures": {**figures, "name": CODE_RAY},
        "task": task,
        "repo": workdir / "kit-ray",
        "driver_cpu_ms_per_stream": None if driver_cpu is None else driver_cpu / streams * 1000,
    }


def _driver_log_tail(home: Path, chars: int = 2000) -> str:
    """The end of the Ray driver's log, under the daemon's home."""
    return "".join(p.read_text(errors="replace")[-chars:] for p in home.rglob("ray-driver.log"))


async def _on_ray_daemon(
    session: Session, home: Path, workdir: Path, address: str, idle_cpu: IdleCpu
) -> dict[str, Any]:
    """Start the Ray daemon in `home`, warm it up, run the workload; its figures."""
    s = session.s
    write_config(home, session.sim.api_base, s.ceiling, project_test_command())
    with (home / "config.toml").open("a", encoding="utf-8") as config:
        config.write(f'\n[executors]\nbackend = "ray"\nray_address = "{address}"\n')
    daemon = DaemonHandle(home)
    ray_session = Session(s, session.log, session.sim, daemon)
    try:
        await asyncio.to_thread(daemon.spawn)
        await asyncio.to_thread(daemon.wait_ready)
        async with ray_session.connected():
            warm_up_s = await _warm_up(ray_session, workdir)
            session.log(f"  code-ray: warmed up in {warm_up_s:.1f}s; the code workload on Ray")
            idle = await idle_cpu(ray_session)
            done = await _ray_run(ray_session, workdir, idle)
    except BaseException:
        session.log(f"  code-ray: the Ray daemon's log (tail):\n{daemon.log_tail()}")
        session.log(f"  code-ray: the Ray driver's log (tail):\n{_driver_log_tail(home)}")
        raise
    finally:
        # Time for the daemon to stop its Ray driver (which ends the driver's actors).
        await asyncio.to_thread(daemon.stop, STOP_GRACE_S)
    return {**done, "warm_up_s": warm_up_s}


async def run_code_ray(
    session: Session, workdir: Path, local: dict[str, Any] | None, idle_cpu: IdleCpu
) -> dict[str, Any]:
    """The code workload on a local Ray cluster of `WORKER_NODES` nodes, compared with the
    local run's figures `local` (None: it was left out); repositories go in `workdir`."""
    reason = await _unavailable(workdir, local)
    if reason is not None or local is None:
        session.log(escape(f"  code-ray: not run: {reason}"))  # 'tierd[ray]' is no markup
        return {"name": CODE_RAY, "not_run": reason}
    t0 = time.monotonic()
    # In this (the main) thread, blocking the loop while the cluster starts and stops: Ray's
    # nodes set a SIGTERM handler, which only the main thread may do; nothing else runs then.
    with local_ray_cluster(worker_nodes=WORKER_NODES, cpus=NODE_CPUS) as cluster:
        cluster_s = time.monotonic() - t0
        session.log(f"  code-ray: {WORKER_NODES}-node cluster up in {cluster_s:.1f}s")
        home = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tierd-bench-ray-"))
        try:
            done = await _on_ray_daemon(session, home, workdir, cluster.address, idle_cpu)
        finally:
            await asyncio.to_thread(shutil.rmtree, home, True)
    figures, task, repo = done["figures"], done["task"], done["repo"]
    merged = await merged_check(repo, task)
    differences = await _tree_differences(local, repo, merged["head"])
    nodes = stream_nodes(task)
    session.log(
        f"  code-ray: done in {figures['wall_clock_s']:.1f}s on {len(set(nodes.values()))} node(s)"
    )
    return {
        "name": CODE_RAY,
        "cluster": {"worker_nodes": WORKER_NODES, "cpus_per_node": NODE_CPUS, "start_s": cluster_s},
        "warm_up_s": done["warm_up_s"],
        "nodes": {"distinct": len(set(nodes.values())), "per_stream": nodes},
        "same_tree_as_local": not differences,
        "tree_differences": differences,
        "ray_driver_cpu_ms_per_stream": done["driver_cpu_ms_per_stream"],
        "comparison": compare_runs(local, figures),
        "result": merged,
        "ray": {**figures, "repo": {"path": str(repo), "filler_modules": session.s.code_files}},
    }
