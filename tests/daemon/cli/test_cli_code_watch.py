"""`tierd submit --repo PATH --watch` of a real code task (git, bubblewrap, the project's own
pytest) on the simulator's `code_demo` team: before asking for approval, the watch shows the
merged result, the changes (files, +/-) and each stream's last test run, as the task view has
them; off a terminal it then exits 4."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.daemon import DaemonProcess

from daemon.tools.code_demo import SCENARIO, code_config, make_project
from daemon.tools.simulator import SimulatorThread, load_scenario

pytestmark = pytest.mark.slow


def test_watch_shows_a_code_tasks_changes_and_tests_before_approval(tmp_path: Path) -> None:
    assert shutil.which("bwrap"), "code tasks run commands under bubblewrap: install bubblewrap"
    repo = make_project(tmp_path / "shop")
    home = tmp_path / "home"
    home.mkdir()
    with SimulatorThread(load_scenario(SCENARIO), scale=0.2) as sim:
        (home / "config.toml").write_text(code_config(sim.api_base), encoding="utf-8")
        d = DaemonProcess(home).start()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "daemon.cli",
                    "submit",
                    "Add codes",
                    "--repo",
                    ".",
                    "--watch",
                ],
                cwd=repo,
                env={**os.environ, "TIERD_HOME": str(home), "COLUMNS": "140"},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-3000:]
            with d.client() as c:
                task = c.get("@last")
        finally:
            d.stop()
    assert task["state"] == "awaiting_approval"
    out = proc.stdout
    assert "result for your approval" in out
    files = {f for s in task["streams"] if s["code"] for f in s["code"]["files"]}
    ins = sum(s["code"].get("insertions") or 0 for s in task["streams"] if s["code"])
    assert f"changes: {len(files)} files, +{ins} " in out, out[-3000:]
    tests_line = next(line for line in out.splitlines() if line.startswith("tests: "))
    for s in task["streams"]:
        runs = [r for r in (s["code"] or {}).get("commands", []) if r.get("name") == "test"]
        if runs:
            assert f"{s['id']} exit {runs[-1]['exit_code']}" in tests_line, tests_line
    assert f"tierd approve {task['id']}" in out  # the task the watch followed
