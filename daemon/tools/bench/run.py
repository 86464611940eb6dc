"""`tierd bench [--quick] [--json FILE]`: tierd against baselines, on the simulator.

One run starts the model simulator in a thread of this process and a real daemon (`tierd
serve`, a subprocess with its own temporary TIERD_HOME) whose three roles point at it, then:

1. Four workloads, each run by tierd, by one sequential agent and by a LangGraph `Send`
   map-reduce level by level (`bench_baselines.py`): (a) the sales-lead example, (b) 20
   independent streams, (c) a skewed DAG of 20 streams in four layers, (d) the same DAG with
   the task option `parallelize = "never"`. Latencies are the scenarios' (executor 1-4 s,
   premium 2-6 s) times a scale factor, so the full run takes a few minutes.
   The baselines replay tierd's task id to the simulator, which draws every call's latency
   and tokens from the call's identity: each stream costs a baseline exactly what it cost
   tierd. Per workload: the execution phase (first stream started to the last stream's first
   pass reviewed), the physical bound, planning / conflict review / merge time, the daemon's
   CPU per stream (psutil on its process; the simulator runs here, not there), tokens beside
   the sequential agent's, and cost beside the same tokens on the premium model.
2. Once per run: task/submit -> first model call latency over many tasks; task/get
   throughput with 50 concurrent clients; `tierd status` start-up; N tasks of 5 streams
   submitted at once under a ceiling of 100; the governor's reaction time and CPU cost.

The physical bound is max(critical path, total work / concurrency) with each stream's work
taken from the latencies the simulator drew for it. A tierd stream is its executor call plus
the orchestrator's review of it (a dependant starts only after the review), so `bound_s`
counts both; `executor_bound_s` counts executor calls alone, the floor for work without
review.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import psutil

from daemon import __version__

__all__ = ["BenchSettings", "run_bench"]

PREMIUM = "openai/gpt-5"
CHEAP = "openai/gpt-5-mini"
TERMINAL = {"completed", "failed", "canceled"}
#: Conflict redos use review rounds 100 and up (daemon/workflow.py); below is the first pass.
CONFLICT_ROUND = 100

LEAD = """Inbound demo request, via the website form.
Company: Harbor & Pine Logistics (regional 3PL, ~400 employees, Columbus, Ohio).
Contact: Dana Whitfield, Head of Operations.
Message: "Our dock-to-stock time averages 9 hours across six warehouses. We run SAP ECC 6.0
and want to know whether your receiving module can help. We decide by the end of Q3."
"""


@dataclass(frozen=True)
class Workload:
    name: str
    scenario: str
    goal: str
    context: str = ""
    options: dict[str, Any] = field(default_factory=dict)


WORKLOADS = (
    Workload("sales_lead", "sales_lead", "Prepare the follow-up for this inbound lead", LEAD),
    Workload("wide", "wide", "Write a twenty-part onboarding guide for new warehouse staff"),
    Workload("dag", "dag", "Prepare a market-entry analysis for the Nordic region"),
    Workload(
        "dag_never",
        "dag",
        "Prepare a market-entry analysis for the Nordic region",
        options={"parallelize": "never"},
    ),
)


def tiny_scenario(width: int) -> dict[str, Any]:
    """Near-zero latencies: for the latency, throughput and scale measurements."""
    return {
        "name": f"tiny-{width}",
        "seed": 3,
        "latency": {"planner": 0.002, "orchestrator": 0.002, "executor": 0.005},
        "completion_tokens": {"planner": 400, "orchestrator": 60, "executor": 150},
        "plan": {
            "summary": "Independent parts.",
            "generate": {"width": width, "pattern": "independent", "kind": "writing"},
        },
    }


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    latency_scale: float
    ceiling: int = 20
    latency_tasks: int = 100
    scale_tasks: int = 200
    scale_streams: int = 5
    scale_ceiling: int = 100
    api_clients: int = 50
    api_requests_per_client: int = 40
    status_runs: int = 5
    governor_cycles: int = 12
    idle_s: float = 2.0
    workload_timeout_s: float = 900.0

    @classmethod
    def for_mode(cls, quick: bool) -> BenchSettings:
        if quick:
            return cls(
                quick=True,
                latency_scale=0.035,
                latency_tasks=10,
                scale_tasks=8,
                api_requests_per_client=4,
                status_runs=3,
                governor_cycles=3,
                idle_s=0.5,
                workload_timeout_s=120.0,
            )
        return cls(quick=False, latency_scale=0.3)


class BenchError(RuntimeError):
    pass


# --- small helpers ----------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in seconds]
    return {
        "n": len(ms),
        "p50": _pct(ms, 50),
        "p99": _pct(ms, 99),
        "mean": statistics.fmean(ms) if ms else 0.0,
        "max": max(ms, default=0.0),
    }


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _cpu_split(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the main (event-loop) thread and of all other live threads."""
    main = other = 0.0
    with contextlib.suppress(psutil.Error):
        for t in proc.threads():
            if t.id == proc.pid:
                main += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
    return main, other


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "cpu_count": os.cpu_count(),
        "memory_bytes": vm.total,
        "memory_gib": vm.total / 2**30,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": {
            "tierd": __version__,
            "litellm": _version("litellm"),
            "langgraph": _version("langgraph"),
        },
    }


def write_config(home: Path, api_base: str, ceiling: int) -> None:
    lines: list[str] = []
    for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
        lines += [
            f"[models.{role}]",
            f'model = "{model}"',
            f'api_base = "{api_base}"',
            'api_key_env = ""',
            "timeout_s = 60.0",
            "max_retries = 3",
            "",
        ]
    lines += ["[plan]", "max_streams = 20", "", "[concurrency]", f"ceiling = {ceiling}", ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


class DaemonHandle:
    """`tierd serve --port 0` in a subprocess with its own TIERD_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.url = ""
        self.token = ""
        self._log = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TIERD_HOME": str(self.home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def spawn(self) -> None:
        self._log = (self.home / "daemon.log").open("wb")
        root = Path(__file__).resolve().parents[3]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "serve", "--port", "0"],
            cwd=root,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        discovery = self.home / "daemon.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"the daemon exited with {self.proc.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError, KeyError):
                info = json.loads(discovery.read_text())
                if info["pid"] == self.proc.pid:
                    self.url, self.token = info["url"], info["token"]
                    return
            time.sleep(0.05)
        raise BenchError("the daemon did not start in time")

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.home / "daemon.log").read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s` (the figures are in by then)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()


class Rpc:
    """JSON-RPC to the daemon over one pooled async client."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
            limits=httpx.Limits(max_connections=400, max_keepalive_connections=400),
        )

    async def __call__(self, method: str, params: dict[str, Any] | None = None) -> Any:
        resp = await self.http.post(
            "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        )
        doc = resp.json()
        if "error" in doc:
            raise BenchError(f"{method}: {doc['error'].get('message')}")
        return doc["result"]

    async def aclose(self) -> None:
        await self.http.aclose()


class RssPoller:
    """Peak resident memory of a process, polled from a thread."""

    def __init__(self, proc: psutil.Process, interval: float = 0.02) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the run ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: BenchSettings, log: Any) -> None:
        self.s = settings
        self.log = log
        self.sim: Any = None
        self.daemon: DaemonHandle | None = None
        self.rpc: Rpc | None = None
        self.idle_cpu_per_s = 0.0
        self.client_cpu_s = 0.0
        self.client_calls = 0
        self.split = (0.0, 0.0)

    # --- the simulator -------------------------------------------------------------------

    def use(self, scenario: Any, scale: float = 1.0) -> None:
        """Swap the simulator's scenario (it is idle) and clear its counters and records."""
        from daemon.tools.simulator.server import load_scenario

        sc = load_scenario(scenario)
        state = self.sim.sim.state
        state.scenario = sc
        state.scale = sc.scale * scale
        state.reset()

    def records(self) -> list[Any]:
        return list(self.sim.sim.state.records)

    def reset_sim(self) -> None:
        self.sim.sim.state.reset()

    @property
    def proc(self) -> psutil.Process:
        assert self.daemon is not None and self.daemon.ps is not None
        return self.daemon.ps

    # --- tasks ---------------------------------------------------------------------------

    async def wait_task(self, task_id: str, limit_s: float) -> dict[str, Any]:
        """Wait for a task to end, asking the daemon only when the simulator says it may have:
        polling task/get all along would itself cost the daemon CPU being measured."""
        assert self.rpc is not None
        deadline = time.monotonic() + limit_s
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            recs = [r for r in self.sim.sim.state.records if r.task_id == task_id]
            merged = any(r.purpose == "merge" and r.status is not None for r in recs)
            busy = any(r.status is None for r in recs)
            if len(recs) != seen or busy:
                seen, quiet_since = len(recs), time.monotonic()
            if merged or time.monotonic() - quiet_since > 1.0:
                task = await self.rpc("task/get", {"task_id": task_id})
                if task["state"] in TERMINAL:
                    return task
                if task["state"] in {"input_required", "awaiting_approval"}:
                    raise BenchError(f"task {task_id} waits for a human ({task['state']})")
                quiet_since = time.monotonic()
                await asyncio.sleep(0.02)
                continue
            await asyncio.sleep(0.005)
        raise BenchError(f"task {task_id} did not finish within {limit_s:.0f}s")

    async def submit(
        self, goal: str, context: str = "", options: dict[str, Any] | None = None
    ) -> tuple[str, float]:
        assert self.rpc is not None
        t0 = time.time()
        out = await self.rpc(
            "task/submit", {"goal": goal, "context": context, "options": options or {}}
        )
        return out["task_id"], t0

    # --- workloads -----------------------------------------------------------------------

    def tiers(self) -> dict[str, Any]:
        from roles.models.gateway import ModelTier

        base = self.sim.api_base
        return {
            role: ModelTier(model=model, api_base=base, timeout_s=60.0, max_retries=3)
            for role, model in (
                ("planner", PREMIUM),
                ("orchestrator", PREMIUM),
                ("executor", CHEAP),
            )
        }

    async def workload(self, wl: Workload) -> dict[str, Any]:
        from daemon.tools.bench.baselines import run_langgraph, run_sequential
        from roles.plan.schema import Plan

        self.use(wl.scenario, self.s.latency_scale)
        cpu0, split0 = _cpu_s(self.proc), _cpu_split(self.proc)
        tid, submitted = await self.submit(wl.goal, wl.context, wl.options)
        task = await self.wait_task(tid, self.s.workload_timeout_s)
        cpu, split1 = _cpu_s(self.proc) - cpu0, _cpu_split(self.proc)
        self.split = (split1[0] - split0[0], split1[1] - split0[1])
        busy_s = time.time() - submitted
        records = self.records()
        if task["state"] != "completed":
            raise BenchError(f"{wl.name}: the task {task['state']}: {task.get('error')}")
        plan = Plan.model_validate(task["plan"])
        settings = task["report"]["settings"]
        tiers = self.tiers()
        self.log(
            f"  {wl.name}: tierd done in {task['report']['time']['wall_clock_s']:.1f}s; "
            "sequential agent ..."
        )
        self.reset_sim()
        seq = await run_sequential(plan, wl.goal, settings, tiers, tid)
        self.client_cpu_s += seq.client_cpu_s
        self.client_calls += seq.calls
        self.log(f"  {wl.name}: sequential {seq.wall_s:.1f}s; LangGraph Send ...")
        self.reset_sim()
        lg = await run_langgraph(plan, wl.goal, settings, tiers, tid, self.s.ceiling)
        self.log(f"  {wl.name}: LangGraph {lg.wall_s:.1f}s")
        self.reset_sim()
        return self.workload_figures(wl, task, plan, records, submitted, cpu, busy_s, seq, lg)

    def workload_figures(
        self,
        wl: Workload,
        task: dict[str, Any],
        plan: Any,
        records: list[Any],
        submitted: float,
        cpu: float,
        busy_s: float,
        seq: Any,
        lg: Any,
    ) -> dict[str, Any]:
        from daemon.tools.bench.baselines import dependency_levels
        from roles.plan.validator import critical_path

        tid = task["id"]
        report = task["report"]
        mine = [r for r in records if r.task_id == tid]
        ok = [r for r in mine if r.status == 200]
        top = [s for s in task["streams"] if s["parent"] is None]
        ids = [s["id"] for s in top]
        first_pass = {
            sid: [
                r
                for r in ok
                if r.stream_id == sid
                and r.round < CONFLICT_ROUND
                and r.purpose in ("execute", "review", "fix")
            ]
            for sid in ids
        }
        work = {sid: sum(r.latency_s for r in rs) for sid, rs in first_pass.items()}
        exec_work = {
            sid: sum(r.latency_s for r in rs if r.purpose == "execute")
            for sid, rs in first_pass.items()
        }
        redone = {r.stream_id for r in ok if r.round >= CONFLICT_ROUND}

        def first_pass_end(s: dict[str, Any]) -> float:
            if s["id"] in redone and first_pass[s["id"]]:
                return max(r.ended_wall for r in first_pass[s["id"]])
            return float(s["ended_at"])

        start = min(float(s["started_at"]) for s in top)
        end = max(first_pass_end(s) for s in top)
        tierd_s = end - start
        concurrency = self.s.ceiling

        def bound(w: dict[str, float]) -> tuple[float, float, float]:
            cp = critical_path(plan, w)
            total = sum(w.values())
            return max(cp, total / concurrency), cp, total

        bound_s, cp_s, total_work_s = bound(work)
        # What the baselines would take with no overhead at all, on the same latencies.
        levels = dependency_levels(plan)
        langgraph_ideal_s = sum(max(work[sid] for sid in level) for level in levels)
        sequential_ideal_s = sum(exec_work.values())
        exec_bound_s, exec_cp_s, _ = bound(exec_work)
        merge_calls = [r for r in ok if r.purpose == "merge"]
        merge_start = min((r.started_wall for r in merge_calls), default=end)
        first_call = min((r.started_wall for r in mine), default=submitted)
        usage = report["usage"]
        per_purpose = usage["per_purpose"]

        def tokens_of(*purposes: str) -> int:
            return int(sum(per_purpose.get(p, {}).get("tokens", 0) for p in purposes))

        total_tokens = int(usage["total"]["tokens"])
        orchestration = int(usage["orchestration_tokens"])
        executor_tokens = int(usage["per_role"].get("executor", {}).get("tokens", 0))
        idle = self.idle_cpu_per_s * busy_s
        cpu_net = max(0.0, cpu - idle)
        streams = len(ids)
        return {
            "name": wl.name,
            "task_id": tid,
            "scenario": wl.scenario,
            "options": wl.options,
            "streams": streams,
            "levels": len(levels),
            "tierd_s": tierd_s,
            "sequential_s": seq.wall_s,
            "langgraph_s": lg.wall_s,
            "bound_s": bound_s,
            "critical_path_s": cp_s,
            "total_work_s": total_work_s,
            "executor_bound_s": exec_bound_s,
            "langgraph_ideal_s": langgraph_ideal_s,
            "sequential_ideal_s": sequential_ideal_s,
            "executor_critical_path_s": exec_cp_s,
            "concurrency": concurrency,
            "vs_bound": tierd_s / bound_s - 1 if bound_s else None,
            "report_execution_s": report["time"]["execution_s"],
            "wall_clock_s": report["time"]["wall_clock_s"],
            "planning_s": start - float(task["created_at"]),
            "review_s": max(0.0, merge_start - end),
            "merge_s": max(0.0, float(task["updated_at"]) - merge_start),
            "stream_review_s": sum(
                r.latency_s for rs in first_pass.values() for r in rs if r.purpose == "review"
            ),
            "conflict_redos": sorted(x for x in redone if x),
            # How long the daemon took to get every stream that needs nothing started, and
            # their first executor calls to the model: its own work while fanning out.
            "root_start_spread_s": _spread(
                float(s["started_at"]) for s in top if not s["depends_on"]
            ),
            "root_first_call_spread_s": _spread(
                min(
                    (r.started_wall for r in first_pass[s["id"]] if r.purpose == "execute"),
                    default=start,
                )
                for s in top
                if not s["depends_on"]
            ),
            "submit_to_first_call_ms": (first_call - submitted) * 1000,
            "calls": len(mine),
            "tokens": total_tokens,
            "executor_tokens": executor_tokens,
            "sequential_tokens": seq.tokens,
            "langgraph_tokens": lg.tokens,
            "orchestration_tokens": orchestration,
            "orchestration_share": usage["orchestration_share"],
            "planner_share": tokens_of("plan") / total_tokens if total_tokens else 0.0,
            "review_share": (
                tokens_of("review", "conflicts", "fix") / total_tokens if total_tokens else 0.0
            ),
            "merge_share": tokens_of("merge") / total_tokens if total_tokens else 0.0,
            "token_check": {
                "expected": seq.tokens + orchestration,
                "deviation": (
                    (total_tokens - orchestration - seq.tokens) / seq.tokens if seq.tokens else 0.0
                ),
            },
            "cost_usd": float(report["cost"]["total_usd"]),
            "premium_only_cost_usd": float(report["cost"]["premium_only_usd"]),
            "cost_ratio": (
                float(report["cost"]["total_usd"]) / float(report["cost"]["premium_only_usd"])
                if report["cost"]["premium_only_usd"]
                else None
            ),
            "daemon_cpu_s": cpu,
            "daemon_cpu_idle_s": idle,
            "daemon_cpu_ms_per_stream": cpu_net / streams * 1000,
            "daemon_cpu_ms_per_stream_raw": cpu / streams * 1000,
            "daemon_cpu_ms_per_stream_loop_thread": self.split[0] / streams * 1000,
            "daemon_cpu_ms_per_stream_other_threads": self.split[1] / streams * 1000,
        }

    # --- once per run --------------------------------------------------------------------

    async def warm_up(self, task_id: str) -> None:
        """Wait for the warm-up task and make one call from here: first calls pay for lazy
        imports (the daemon loads its workflow with the first task) and connection set-up,
        which is not what is measured."""
        from roles.models.gateway import call_model

        task = await self.wait_task(task_id, 180)
        if task["state"] != "completed":
            raise BenchError(f"the warm-up task {task['state']}: {task.get('error')}")
        await call_model(
            self.tiers()["executor"],
            [{"role": "user", "content": "hi"}],
            role="executor",
            purpose="execute",
            task_id="warm-up",
        )
        self.reset_sim()

    async def idle_cpu(self) -> None:
        await asyncio.sleep(0.3)
        cpu0, t0 = _cpu_s(self.proc), time.monotonic()
        await asyncio.sleep(self.s.idle_s)
        self.idle_cpu_per_s = (_cpu_s(self.proc) - cpu0) / (time.monotonic() - t0)

    async def first_call_latency(self) -> dict[str, Any]:
        """task/submit -> the first model call reaching the simulator, one task at a time."""
        self.use(tiny_scenario(1))
        lat, submit_rtt = [], []
        for i in range(self.s.latency_tasks):
            t0 = time.time()
            tid, _ = await self.submit(f"Write a short note number {i + 1}")
            submit_rtt.append(time.time() - t0)
            deadline = time.monotonic() + 30
            first = None
            while first is None and time.monotonic() < deadline:
                first = next((r for r in self.sim.sim.state.records if r.task_id == tid), None)
                if first is None:
                    await asyncio.sleep(0.001)
            if first is None:
                raise BenchError(f"no model call for task {tid} within 30s")
            lat.append(first.started_wall - t0)
            task = await self.wait_task(tid, 60)
            if task["state"] != "completed":
                raise BenchError(f"latency task {task['state']}: {task.get('error')}")
            self.reset_sim()
        return {
            "submit_to_first_call_ms": _summary_ms(lat),
            "submit_rtt_ms": _summary_ms(submit_rtt),
        }

    async def task_get_load(self, task_id: str) -> dict[str, Any]:
        """task/get with N concurrent clients, each its own connection, all at once."""
        assert self.daemon is not None
        n, k = self.s.api_clients, self.s.api_requests_per_client
        body = {"jsonrpc": "2.0", "id": 1, "method": "task/get", "params": {"task_id": task_id}}
        go = asyncio.Event()
        latencies: list[float] = []
        errors = 0
        size = 0

        async def client() -> None:
            nonlocal errors, size
            async with httpx.AsyncClient(
                base_url=self.daemon.url,
                timeout=60.0,
                headers={"Authorization": f"Bearer {self.daemon.token}"},
            ) as http:
                (await http.post("/rpc", json=body)).raise_for_status()  # connect first
                await go.wait()
                for _ in range(k):
                    t0 = time.perf_counter()
                    resp = await http.post("/rpc", json=body)
                    latencies.append(time.perf_counter() - t0)
                    if resp.status_code != 200 or "result" not in resp.json():
                        errors += 1
                    size = len(resp.content)

        tasks = [asyncio.create_task(client()) for _ in range(n)]
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        ms = _summary_ms(latencies)
        return {
            "clients": n,
            "requests": len(latencies),
            "errors": errors,
            "response_bytes": size,
            "requests_per_s": len(latencies) / elapsed,
            "p50_ms": ms["p50"],
            "p99_ms": ms["p99"],
            "mean_ms": ms["mean"],
            "max_ms": ms["max"],
        }

    def status_startup(self) -> dict[str, Any]:
        assert self.daemon is not None
        exe = shutil.which("tierd", path=str(Path(sys.executable).parent))
        cmd = [exe, "status"] if exe else [sys.executable, "-m", "daemon.cli", "status"]
        times = []
        for _ in range(self.s.status_runs):
            t0 = time.perf_counter()
            done = subprocess.run(
                cmd, env=self.daemon.env, capture_output=True, timeout=60, check=False
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

    async def scale(self) -> dict[str, Any]:
        """N tasks of 5 streams submitted at once under a high ceiling."""
        assert self.rpc is not None
        n, width = self.s.scale_tasks, self.s.scale_streams
        await self.rpc("config/set", {"key": "concurrency.ceiling", "value": self.s.scale_ceiling})
        self.use(tiny_scenario(width))
        before = (await self.rpc("daemon/status"))["tasks"]
        ended_before = sum(before.get(s, 0) for s in TERMINAL)
        rss0 = self.proc.memory_info().rss
        cpu0 = _cpu_s(self.proc)
        submit_lat: list[float] = []
        submit_errors: list[str] = []
        ids: list[str] = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            try:
                tid, _ = await self.submit(f"Write a five-part checklist, batch item {i + 1}")
                ids.append(tid)
            except Exception as exc:
                submit_errors.append(repr(exc)[:300])
            submit_lat.append(time.perf_counter() - t)

        with RssPoller(self.proc) as rss:
            t0 = time.time()
            await asyncio.gather(*(one(i) for i in range(n)))
            submitted_s = time.time() - t0
            deadline = time.monotonic() + self.s.workload_timeout_s
            while time.monotonic() < deadline:
                counts = (await self.rpc("daemon/status"))["tasks"]
                if sum(counts.get(s, 0) for s in TERMINAL) - ended_before >= len(ids):
                    break
                await asyncio.sleep(0.25)
            cpu = _cpu_s(self.proc) - cpu0
        views = (await self.rpc("task/list", {"limit": min(500, n + 50)}))["tasks"]
        wanted = set(ids)
        mine = {v["id"]: v for v in views if v["id"] in wanted}
        completed = [v for v in mine.values() if v["state"] == "completed"]
        not_completed = len(ids) - len(completed)
        last = max((float(v["updated_at"]) for v in completed), default=time.time())
        records = self.records()
        bad_calls = sum(1 for r in records if r.status not in (200, None))
        self.reset_sim()
        errors = len(submit_errors) + not_completed + bad_calls
        streams = n * width
        return {
            "tasks": n,
            "streams_per_task": width,
            "ceiling": self.s.scale_ceiling,
            "completed": len(completed),
            "errors": errors,
            "submit_errors": len(submit_errors),
            "tasks_not_completed": not_completed,
            "failed_model_calls": bad_calls,
            "model_calls": len(records),
            "error_samples": submit_errors[:3],
            "duration_s": last - t0,
            "submit_burst_s": submitted_s,
            "tasks_per_s": len(completed) / (last - t0) if last > t0 else 0.0,
            "submit_p50_ms": _pct(submit_lat, 50) * 1000,
            "submit_p99_ms": _pct(submit_lat, 99) * 1000,
            "rss_before_mib": rss0 / 2**20,
            "peak_rss_mib": max(rss.peak, rss0) / 2**20,
            "daemon_cpu_s": cpu,
            "daemon_cpu_ms_per_stream": cpu / streams * 1000,
        }

    async def governor(self) -> dict[str, Any]:
        """Reaction time with scripted memory figures, and the CPU of real readings."""
        from daemon.governor.governor import ConcurrencySettings, Governor
        from daemon.governor.memory import GiB, ScriptedSource, default_source

        source = ScriptedSource(total=16 * GiB)
        source.set(used_fraction=0.5)
        settings = ConcurrencySettings(ceiling=5, cooldown_s=0.0)
        gov = Governor(settings, source=source)
        rng = random.Random(5)

        async def until(pred: Any, limit_s: float = 5.0) -> None:
            deadline = time.monotonic() + limit_s
            while not pred():
                if time.monotonic() > deadline:
                    raise BenchError("the governor did not react within 5s")
                await asyncio.sleep(0.001)

        await gov.start()
        try:
            for _ in range(self.s.governor_cycles):
                # Pressure lands anywhere within a reading interval.
                await asyncio.sleep(rng.uniform(0, settings.interval_ms / 1000))
                source.set(used_fraction=0.97)  # above hard: nothing new is dispatched
                await until(lambda: gov.limit == 0)
                source.set(used_fraction=0.90)  # above soft: back to the floor (no cool-down)
                await until(lambda: gov.limit >= 1)
        finally:
            await gov.stop()
        scripted = gov.stats()
        real = Governor(ConcurrencySettings(), source=default_source())
        for _ in range(40):
            await real.tick()
        rs = real.stats()
        tick_ms = {k: rs["tick_cpu_s"][k] * 1000 for k in ("mean", "max")}
        wall_ms = {k: rs["tick_wall_s"][k] * 1000 for k in ("mean", "max")}
        reaction = scripted["lower_reaction_s"]
        interval = ConcurrencySettings().interval_ms
        return {
            "interval_ms": settings.interval_ms,
            "lowerings": scripted["lowerings"],
            "reaction_ms": {
                "mean": reaction["mean"] * 1000,
                "max": reaction["max"] * 1000,
                "n": reaction["count"],
            },
            "tick_cpu_ms": tick_ms,
            "tick_wall_ms": wall_ms,
            "ticks_measured": rs["ticks"],
            "cpu_share_of_core": rs["tick_cpu_s"]["mean"] / (interval / 1000),
        }

    # --- everything ----------------------------------------------------------------------

    async def main(self, warm_up_task: str) -> dict[str, Any]:
        assert self.daemon is not None
        self.rpc = Rpc(self.daemon.url, self.daemon.token)
        try:
            # The governor runs in this process: measure it while the daemon warms up.
            self.log("warming up; governor")
            _, gov = await asyncio.gather(self.warm_up(warm_up_task), self.governor())
            await self.idle_cpu()
            workloads = []
            for i, wl in enumerate(WORKLOADS):
                self.log(f"[{i + 1}/{len(WORKLOADS)}] {wl.name}")
                workloads.append(await self.workload(wl))
            self.log("task/submit -> first model call")
            api = await self.first_call_latency()
            self.log(f"task/get with {self.s.api_clients} clients")
            api["task_get"] = await self.task_get_load(workloads[0]["task_id"])
            self.log("`tierd status` start-up")
            api["status_startup"] = await asyncio.to_thread(self.status_startup)
            self.log(f"{self.s.scale_tasks} tasks x {self.s.scale_streams} streams at once")
            scale = await self.scale()
        finally:
            await self.rpc.aclose()
        streams = sum(w["streams"] for w in workloads)
        cpu_net = sum(w["daemon_cpu_ms_per_stream"] * w["streams"] for w in workloads)
        calls_per_stream = sum(w["calls"] for w in workloads) / streams
        client_ms = self.client_cpu_s / self.client_calls * 1000 if self.client_calls else 0.0
        per_stream = cpu_net / streams
        overhead = {
            "daemon_cpu_ms_per_stream": per_stream,
            "daemon_idle_cpu_ms_per_s": self.idle_cpu_per_s * 1000,
            "model_calls_per_stream": calls_per_stream,
            "client_cpu_ms_per_call": client_ms,
            "daemon_cpu_ms_per_stream_excl_client": max(
                0.0, per_stream - calls_per_stream * client_ms
            ),
        }
        return {
            "workloads": workloads,
            "overhead": overhead,
            "api": api,
            "scale": scale,
            "governor": gov,
        }


def _spread(values: Any) -> float:
    v = list(values)
    return max(v) - min(v) if v else 0.0


def _import_model_layer() -> None:
    import roles.models.gateway  # noqa: F401
    from daemon import bench_baselines  # noqa: F401


def _submit_sync(daemon: DaemonHandle, goal: str) -> str:
    with httpx.Client(
        base_url=daemon.url, timeout=60, headers={"Authorization": f"Bearer {daemon.token}"}
    ) as http:
        doc = http.post(
            "/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": {"goal": goal}},
        ).json()
    if "error" in doc:
        raise BenchError(f"task/submit: {doc['error'].get('message')}")
    return str(doc["result"]["task_id"])


def run(settings: BenchSettings, log: Any) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    from daemon.tools.simulator.server import SimulatorThread

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tierd-bench-") as tmp:
        home = Path(tmp)
        bench = Bench(settings, log)
        sim = SimulatorThread(tiny_scenario(1)).start()
        bench.sim = sim
        daemon = DaemonHandle(home)
        bench.daemon = daemon
        try:
            write_config(home, sim.api_base, settings.ceiling)
            log("starting the daemon")
            daemon.spawn()
            # The model layer takes seconds to import (litellm): import it in a thread while
            # the daemon starts and loads its own with the warm-up task.
            importer = threading.Thread(
                target=_import_model_layer, name="bench-import", daemon=True
            )
            importer.start()
            daemon.wait_ready()
            log("daemon ready")
            bench.use(tiny_scenario(2))
            warm_up_task = _submit_sync(daemon, "Write a two-part note")
            importer.join()
            log("model layer imported")
            result = asyncio.run(bench.main(warm_up_task))
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
    scenario_latency = {"executor_latency_s": [1.0, 4.0], "premium_latency_s": [2.0, 6.0]}
    return {
        "tierd_version": __version__,
        "mode": "quick" if settings.quick else "full",
        "started_at": started,
        "duration_s": time.time() - started,
        "settings": {
            "latency_scale": settings.latency_scale,
            "ceiling": settings.ceiling,
            **scenario_latency,
            "models": {"premium": PREMIUM, "cheap": CHEAP},
        },
        **result,
        "machine": machine_info(),
    }


def run_bench(quick: bool, json_path: str | None) -> int:
    from rich.console import Console

    from daemon.tools.bench.report import evaluate_targets, print_report

    err = Console(stderr=True)
    settings = BenchSettings.for_mode(quick)
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
