"""Helpers for tests that talk to the model simulator over real HTTP.

Any test can `from support.simulator import running_simulator`. Two ways to run it:

- `running_simulator(scenario)`: in a background thread of the test process, on a free
  loopback port; yields the `SimulatorThread` (`.url`, `.api_base`). Fast; the usual choice.
- `SimulatorProcess(scenario_file)`: `python -m daemon.tools.simulator` in a subprocess, for tests
  that need the simulator to outlive or be independent of the test process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from daemon.tools.simulator import Scenario, SimulatorThread
from support import ROOT


@contextmanager
def running_simulator(
    scenario: Scenario | dict[str, Any] | str | Path | None = None, *, scale: float | None = None
) -> Iterator[SimulatorThread]:
    """The simulator in a background thread on a free port, stopped on exit."""
    with SimulatorThread(scenario, scale=scale) as sim:
        yield sim


def start_simulator(
    scenario: Scenario | dict[str, Any] | str | Path | None = None, *, scale: float | None = None
) -> tuple[str, SimulatorThread]:
    """Start it and return (base URL, handle); call `handle.stop()` when done."""
    sim = SimulatorThread(scenario, scale=scale).start()
    return sim.url, sim


#: Models that take a minute: submitted tasks stay live (planning) while a test looks at them.
SLOW_MODELS = {"latency": {"planner": 60.0, "orchestrator": 60.0, "executor": 60.0}}


def use_scenario(sim: Any, scenario: dict[str, Any]) -> None:
    """Swap the running simulator's scenario (the next calls follow the new one)."""
    httpx.post(f"{sim.url}/_sim/scenario", json=scenario, timeout=10).raise_for_status()


def stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_sim/stats", timeout=10).json()


def reset(url: str) -> None:
    httpx.post(f"{url}/_sim/reset", timeout=10).raise_for_status()


def calls(url: str, **match: Any) -> list[dict[str, Any]]:
    """The simulator's call records whose fields equal `match` (e.g. purpose="review")."""
    return [c for c in stats(url)["calls"] if all(c.get(k) == v for k, v in match.items())]


def wait_for_calls(url: str, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
    """Wait until at least one matching call has finished (has a status); return them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in calls(url, **match) if c["status"] is not None]
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no finished simulator call matching {match} within {timeout}s")


class SimulatorProcess:
    """`python -m daemon.tools.simulator 0 SCENARIO SCALE` in a subprocess on a free port."""

    def __init__(self, scenario: str | Path | None = None, scale: float = 1.0) -> None:
        self.args = ["0", str(scenario or "sales_lead"), str(scale)]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> SimulatorProcess:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.tools.simulator", *self.args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the banner with the real port, printed first
        found = re.search(r"(http://\S+?)/v1", line)
        if not found:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = found.group(1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v1/models", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("simulator did not answer in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
