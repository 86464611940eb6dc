"""The daemon under test and the simulator it calls: `tierd serve` in a subprocess with its own
TIERD_HOME, its configuration, JSON-RPC to it, and the `Session` the measurements share.

The bench waits for tasks by watching the simulator's call records and asks the daemon only
when a task may have ended: polling task/get all along would itself cost the daemon CPU that
is being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from daemon.tools.bench.workloads import CHEAP, PREMIUM, BenchSettings
from daemon.tools.simulator import CallRecord, Scenario, SimulatorThread, load_scenario

__all__ = [
    "TERMINAL",
    "BenchError",
    "DaemonHandle",
    "Log",
    "Rpc",
    "Session",
    "submit_sync",
    "write_config",
]

TERMINAL = {"completed", "failed", "canceled"}
#: What the governor assumes one agent costs until it has seen real growth. The shipped 64 MiB
#: is for agents that may run a test suite; the bench's agents only wait on an HTTP call, and
#: at 64 MiB a 1,000-stream run would need 64 GB of headroom. The governor still learns the
#: real cost from the daemon's growth and lowers the limit if memory runs short.
BENCH_MIN_AGENT_BYTES = 4 * 2**20
#: Each model call's timeout (the shipped default of the premium roles): above the longest
#: latency the bench simulates (`BenchSettings.in_flight_latency_s`).
MODEL_TIMEOUT_S = 180.0
#: How the bench reports progress (one line at a time, on stderr).
Log = Callable[[str], None]


class BenchError(RuntimeError):
    """The run cannot go on (the daemon failed, a task did not finish, ...)."""


def write_config(home: Path, api_base: str, ceiling: int, test_command: str = "") -> None:
    """The daemon's config.toml: the three roles on the simulator, 20 streams, the ceiling
    and the governor's per-agent estimate, and the code workload's test command."""
    lines: list[str] = []
    for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
        lines += [
            f"[models.{role}]",
            f'model = "{model}"',
            f'api_base = "{api_base}"',
            'api_key_env = ""',
            f"timeout_s = {MODEL_TIMEOUT_S}",
            "max_retries = 3",
            "",
        ]
    lines += ["[plan]", "max_streams = 20", "", "[concurrency]", f"ceiling = {ceiling}"]
    lines += [f"min_agent_bytes = {BENCH_MIN_AGENT_BYTES}", ""]
    if test_command:
        lines += ["[code]", f"test_command = {json.dumps(test_command)}", ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


class DaemonHandle:
    """`tierd serve --port 0` in a subprocess with its own TIERD_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.url = ""
        self.token = ""
        self._log: IO[bytes] | None = None

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
        """Until the daemon has written its discovery file (its URL and token)."""
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


def submit_sync(daemon: DaemonHandle, goal: str) -> str:
    """task/submit from outside an event loop; returns the task id."""
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


class Session:
    """One run's simulator (a thread of this process) and daemon, and the bench's ways of
    using them: swap the scenario, read the call records, submit and wait for tasks."""

    def __init__(
        self, settings: BenchSettings, log: Log, sim: SimulatorThread, daemon: DaemonHandle
    ) -> None:
        self.s = settings
        self.log = log
        self.sim = sim
        self.daemon = daemon
        self._rpc: Rpc | None = None

    @property
    def rpc(self) -> Rpc:
        if self._rpc is None:
            raise BenchError("not connected to the daemon (use `async with session.connected()`)")
        return self._rpc

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Rpc]:
        """JSON-RPC to the daemon for the duration, in the running event loop."""
        self._rpc = Rpc(self.daemon.url, self.daemon.token)
        try:
            yield self._rpc
        finally:
            await self._rpc.aclose()
            self._rpc = None

    @property
    def proc(self) -> psutil.Process:
        assert self.daemon.ps is not None
        return self.daemon.ps

    # --- the simulator -------------------------------------------------------------------

    def use(self, scenario: Scenario | dict[str, Any] | str, scale: float = 1.0) -> None:
        """Swap the simulator's scenario (it is idle) and clear its counters and records."""
        sc = load_scenario(scenario)
        state = self.sim.sim.state
        state.scenario = sc
        state.scale = sc.scale * scale
        state.reset()

    def records(self) -> list[CallRecord]:
        return list(self.sim.sim.state.records)

    def reset_sim(self) -> None:
        self.sim.sim.state.reset()

    def tiers(self) -> dict[str, Any]:
        """The three roles' model tiers on the simulator, for calls made from this process."""
        from roles.models.gateway import ModelTier  # litellm: seconds to import, so late

        base = self.sim.api_base
        return {
            role: ModelTier(model=model, api_base=base, timeout_s=60.0, max_retries=3)
            for role, model in (
                ("planner", PREMIUM),
                ("orchestrator", PREMIUM),
                ("executor", CHEAP),
            )
        }

    # --- tasks ---------------------------------------------------------------------------

    async def submit(
        self,
        goal: str,
        context: str = "",
        options: dict[str, Any] | None = None,
        repo: str | None = None,
    ) -> tuple[str, float]:
        """task/submit (a code task with `repo`); returns the task id and the wall-clock time
        it was sent."""
        params: dict[str, Any] = {"goal": goal, "context": context, "options": options or {}}
        if repo is not None:
            params["repo"] = repo
        t0 = time.time()
        out = await self.rpc("task/submit", params)
        return out["task_id"], t0

    async def wait_task(self, task_id: str, limit_s: float) -> dict[str, Any]:
        """Wait for a task to end, asking the daemon only when the simulator says it may have:
        polling task/get all along would itself cost the daemon CPU being measured."""
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
