"""`tierd bench [--quick] [--json FILE] [--only NAME ...] [--skip NAME ...]`: tierd against
baselines, on the simulator.

One run starts the model simulator in a thread of this process and a real daemon (`tierd
serve`, a subprocess with its own temporary TIERD_HOME) whose three roles point at it, then:

1. Four workloads (`workloads.py`), each run by tierd, by one sequential agent, by a
   LangGraph `Send` map-reduce level by level and by a LangGraph functional-API program that
   starts each stream when ready (`compare.py`, `baselines.py`). Per workload
   (`figures.py`): the execution phase, the physical bound, planning / conflict review / merge
   time, the daemon's CPU per stream (psutil on its process; the simulator runs here, not
   there), tokens beside the sequential agent's, and cost beside the same tokens on the
   premium model. The full run takes a few minutes.
   Then the code workload (`code_workload.py`): 8 code streams on a generated repository, with
   the git and sandbox overhead per stream measured with tierd's own classes; then the same
   workload on a three-node local Ray cluster through a second daemon (`code_ray.py`,
   "code-ray"), set beside the local run: wall clock, per-stream time and overhead, nodes.
2. Once per run (`micro.py`, `governor_reaction.py`): task/submit -> first model call latency
   over many tasks; task/get throughput with 50 concurrent clients; `tierd status` start-up;
   N tasks of 5 streams submitted at once under a ceiling of 100, then 1,000 streams in flight
   at once under a ceiling of 1,000 (`in_flight.py`); the governor's reaction time and CPU cost.

`report.py` prints the tables and the targets; `--json` writes every figure. `--only` runs
the named workloads alone, without the once-per-run measurements; `--skip` leaves workloads
out and keeps them. Both take names repeated or comma-separated ("code,code-ray"). "code-ray"
compares with "code": selecting it runs "code" too; with `--skip code` it is not run (its
figures say so).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from daemon import __version__
from daemon.tools.bench.code_ray import run_code_ray
from daemon.tools.bench.code_repo import project_test_command
from daemon.tools.bench.code_workload import run_code_workload
from daemon.tools.bench.compare import run_workload
from daemon.tools.bench.figures import workload_figures
from daemon.tools.bench.governor_reaction import governor_reaction
from daemon.tools.bench.harness import (
    BenchError,
    DaemonHandle,
    Log,
    Session,
    submit_sync,
    write_config,
)
from daemon.tools.bench.measure import cpu_s, machine_info
from daemon.tools.bench.micro import first_call_latency, scale, status_startup, task_get_load
from daemon.tools.bench.workloads import (
    CHEAP,
    CODE,
    CODE_RAY,
    NAMES,
    PREMIUM,
    SCENARIO_LATENCY,
    WORKLOADS,
    BenchSettings,
    tiny_scenario,
)
from daemon.tools.simulator import SimulatorThread

__all__ = ["BenchSettings", "run", "run_bench"]


async def warm_up(session: Session, task_id: str) -> None:
    """Wait for the warm-up task and make one call from here: first calls pay for lazy
    imports (the daemon loads its workflow with the first task) and connection set-up,
    which is not what is measured."""
    from roles.models.gateway import call_model

    task = await session.wait_task(task_id, 180)
    if task["state"] != "completed":
        raise BenchError(f"the warm-up task {task['state']}: {task.get('error')}")
    await call_model(
        session.tiers()["executor"],
        [{"role": "user", "content": "hi"}],
        role="executor",
        purpose="execute",
        task_id="warm-up",
    )
    session.reset_sim()


async def idle_cpu_per_s(session: Session) -> float:
    """The daemon's CPU seconds per second while it has nothing to do."""
    await asyncio.sleep(0.3)
    cpu0, t0 = cpu_s(session.proc), time.monotonic()
    await asyncio.sleep(session.s.idle_s)
    return (cpu_s(session.proc) - cpu0) / (time.monotonic() - t0)


def overhead(
    workloads: list[dict[str, Any]], idle_per_s: float, client_cpu_s: float, client_calls: int
) -> dict[str, Any]:
    """The daemon's CPU per stream over all workloads, and an estimate without the litellm
    client's own share (measured on the sequential baseline, in this process)."""
    streams = sum(w["streams"] for w in workloads)
    cpu_net = sum(w["daemon_cpu_ms_per_stream"] * w["streams"] for w in workloads)
    calls_per_stream = sum(w["calls"] for w in workloads) / streams
    client_ms = client_cpu_s / client_calls * 1000 if client_calls else 0.0
    per_stream = cpu_net / streams
    return {
        "daemon_cpu_ms_per_stream": per_stream,
        "daemon_idle_cpu_ms_per_s": idle_per_s * 1000,
        "model_calls_per_stream": calls_per_stream,
        "client_cpu_ms_per_call": client_ms,
        "daemon_cpu_ms_per_stream_excl_client": max(0.0, per_stream - calls_per_stream * client_ms),
    }


async def measure_all(session: Session, warm_up_task: str, code_dir: Path) -> dict[str, Any]:
    """Every measurement, in order; the figures without the run's metadata."""
    s, log = session.s, session.log
    everything = not s.only
    text = [wl for wl in WORKLOADS if (everything or wl.name in s.only) and wl.name not in s.skip]
    code_ray = (everything or CODE_RAY in s.only) and CODE_RAY not in s.skip
    # The Ray run compares with the local one: it runs too, unless it is skipped.
    code = (everything or CODE in s.only or code_ray) and CODE not in s.skip
    count = len(text) + int(code) + int(code_ray)
    result: dict[str, Any] = {}
    async with session.connected():
        if everything:
            # The governor runs in this process: measure it while the daemon warms up.
            log("warming up; governor")
            _, result["governor"] = await asyncio.gather(
                warm_up(session, warm_up_task), governor_reaction(s.governor_cycles)
            )
        else:
            log("warming up")
            await warm_up(session, warm_up_task)
        idle = await idle_cpu_per_s(session)
        workloads = []
        client_cpu, client_calls = 0.0, 0
        for i, wl in enumerate(text):
            log(f"[{i + 1}/{count}] {wl.name}")
            done = await run_workload(session, wl)
            client_cpu += done.sequential.client_cpu_s
            client_calls += done.sequential.calls
            workloads.append(workload_figures(done, s.ceiling, idle))
        result["workloads"] = workloads
        if workloads:
            result["overhead"] = overhead(workloads, idle, client_cpu, client_calls)
        if code:
            log(f"[{len(text) + 1}/{count}] code")
            result["code"] = await run_code_workload(session, code_dir, idle)
        if code_ray:
            log(f"[{count}/{count}] {CODE_RAY}")
            result["code_ray"] = await run_code_ray(
                session, code_dir, result.get("code"), idle_cpu_per_s
            )
        if everything:
            # task/get's load reads a finished task: a workload's, or the warm-up's when
            # every workload was skipped.
            finished = workloads[0]["task_id"] if workloads else warm_up_task
            result.update(await _once_per_run(session, finished))
    return result


async def _once_per_run(session: Session, finished_task: str) -> dict[str, Any]:
    """The API's latency and throughput, `tierd status`, many tasks at once."""
    s, log = session.s, session.log
    log("task/submit -> first model call")
    api = await first_call_latency(session)
    log(f"task/get with {s.api_clients} clients")
    api["task_get"] = await task_get_load(session, finished_task)
    log("`tierd status` start-up")
    api["status_startup"] = await asyncio.to_thread(status_startup, session)
    log(f"{s.scale_tasks} tasks x {s.scale_streams} streams at once")
    return {"api": api, "scale": await scale(session)}


def _import_model_layer() -> None:
    import daemon.tools.bench.baselines  # noqa: F401
    import roles.models.gateway  # noqa: F401


def _measure(session: Session, home: Path, code_dir: Path) -> dict[str, Any]:
    """Start the daemon on the session's simulator, warm it up and measure everything."""
    settings, log, daemon = session.s, session.log, session.daemon
    write_config(home, session.sim.api_base, settings.ceiling, project_test_command())
    log("starting the daemon")
    daemon.spawn()
    # The model layer takes seconds to import (litellm): import it in a thread while
    # the daemon starts and loads its own with the warm-up task.
    importer = threading.Thread(target=_import_model_layer, name="bench-import", daemon=True)
    importer.start()
    daemon.wait_ready()
    log("daemon ready")
    session.use(tiny_scenario(2))
    warm_up_task = submit_sync(daemon, "Write a two-part note")
    importer.join()
    log("model layer imported")
    return asyncio.run(measure_all(session, warm_up_task, code_dir))


@contextlib.contextmanager
def _code_dir(settings: BenchSettings) -> Iterator[Path]:
    """Where the code workload makes its repository: outside the daemon's home (which the
    sandbox hides); `settings.code_dir` is left for inspection, a temporary one removed."""
    if settings.code_dir is not None:
        path = Path(settings.code_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tierd-bench-code-") as tmp:
        yield Path(tmp).resolve()


def run(settings: BenchSettings, log: Log) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    started = time.time()
    with _code_dir(settings) as code_dir, tempfile.TemporaryDirectory(prefix="tierd-bench-") as tmp:
        home = Path(tmp)
        sim = SimulatorThread(tiny_scenario(1)).start()
        daemon = DaemonHandle(home)
        try:
            result = _measure(Session(settings, log, sim, daemon), home, code_dir)
        except BaseException:
            tail = daemon.log_tail()
            if tail:
                log(f"daemon log (tail):\n{tail}")
            raise
        finally:
            log("stopping")
            daemon.stop(grace_s=1.0 if settings.quick else 20.0)
            log("daemon stopped")
            sim.stop()
            log("simulator stopped")
    return {
        "tierd_version": __version__,
        "mode": "quick" if settings.quick else "full",
        "started_at": started,
        "duration_s": time.time() - started,
        "only": list(settings.only),
        "skipped": list(settings.skip),
        "settings": {
            "latency_scale": settings.latency_scale,
            "ceiling": settings.ceiling,
            "code_files": settings.code_files,
            "code_rounds": settings.code_rounds,
            "code_starts": settings.code_starts,
            **SCENARIO_LATENCY,
            "models": {"premium": PREMIUM, "cheap": CHEAP},
        },
        **result,
        "machine": machine_info(),
    }


def _names(args: Sequence[str]) -> list[str]:
    """Workload names given repeated or comma-separated ("code,code-ray")."""
    return [name.strip() for arg in args for name in arg.split(",") if name.strip()]


def run_bench(
    quick: bool, json_path: str | None, only: Sequence[str] = (), skip: Sequence[str] = ()
) -> int:
    """`tierd bench`: run, print the tables, write the JSON; the exit code (2: an unknown
    workload in `only` or `skip`)."""
    from rich.console import Console

    from daemon.tools.bench.report import evaluate_targets, print_report

    err = Console(stderr=True)
    only, skip = _names(only), _names(skip)
    unknown = [name for name in (*only, *skip) if name not in NAMES]
    if unknown:
        err.print(f"tierd bench: no workload {', '.join(unknown)} (there are: {', '.join(NAMES)})")
        return 2
    settings = dataclasses.replace(
        BenchSettings.for_mode(quick),
        only=tuple(dict.fromkeys(only)),
        skip=tuple(dict.fromkeys(skip)),
    )
    t0 = time.monotonic()

    def log(message: str) -> None:
        err.print(f"[dim]bench {time.monotonic() - t0:5.1f}s:[/] {message}", highlight=False)

    try:
        report = run(settings, log)
    except BenchError as exc:
        err.print(f"[red]tierd bench failed:[/] {exc}")
        return 1
    report["targets"] = evaluate_targets(report)
    # Piped or captured output gets a width the tables fit in (a terminal keeps its own).
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    print_report(report, Console(width=150) if wide else Console())
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"figures written to {json_path}")
    return 0
