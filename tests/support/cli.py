"""The `tierd` command as a user runs it, and the small plans the CLI tests submit.

Each CLI test runs the real command (`python -m daemon.cli`) in a subprocess against a real
daemon on the simulator; what differs between them is the arguments, not this set-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support import ROOT
from support.daemon import DaemonProcess, write_config

#: Latencies that keep a task to a second or so.
QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}


def part(id_: str, **kw: Any) -> dict[str, Any]:
    """A stream writing part `id_`, owning `part-<id>/`; `kw` overrides any field."""
    return {
        "id": id_,
        "title": f"Part {id_}",
        "job": f"Write part {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": [f"part-{id_}/"],
        "acceptance_check": "It is there.",
        **kw,
    }


#: Two independent streams, quickly.
TWO = {"latency": QUICK, "plan": {"streams": [part("a"), part("b")]}}


def run_tierd(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 90.0,
    columns: int = 120,
) -> subprocess.CompletedProcess[str]:
    """`tierd ARGS` in a subprocess with TIERD_HOME=home, run from `cwd`; output captured."""
    full_env = {**os.environ, "TIERD_HOME": str(home), "COLUMNS": str(columns), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def daemon_and_simulator(home: Path, scenario: Any) -> Iterator[tuple[DaemonProcess, Any]]:
    """A daemon in `home` on a simulator running `scenario`; both stopped on exit. The
    simulator is yielded too, for tests that change its scenario between tasks."""
    from support.simulator import running_simulator

    with running_simulator(scenario) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            yield d, sim
        finally:
            d.stop()
