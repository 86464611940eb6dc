"""A code stream's life across kills, cancels and setups, through a real daemon.

- SIGKILL mid-loop: the restarted daemon resumes the stream at the step it reached; no model
  answer is asked for twice and no command runs twice (each run of the counting command adds a
  line to a file in the worktree: the committed file has exactly one line per scripted run).
  When the task ends, no worktree is left and only the result branches remain.
- Cancel while a command runs: the command's processes are gone, the task is canceled and
  nothing of it is left in the repository (a canceled task keeps no branch).
- The setup command runs once per worktree in the sandbox before the executor; a failing one
  fails its stream with the command's output. `link_dirs` are shared read-only, and the test
  command finds what is in them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import PYTEST
from support.daemon import DaemonProcess, task_of, wait_ended, wait_for, write_config
from support.simulator import running_simulator, stats, use_scenario

from daemon.tools.simulator.server import SimulatorThread

pytestmark = pytest.mark.slow

FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}


def one_stream(owns: list[str]) -> dict[str, Any]:
    return {
        "streams": [
            {
                "id": "work",
                "title": "The work",
                "job": "Do the work",
                "output_definition": "the change, committed",
                "ownership": owns,
                "kind": "other",
            }
        ]
    }


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        yield s


def start(home: Path, sim: SimulatorThread, code: str) -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim.url, "[code]\n" + code)
    return DaemonProcess(home).start()


def branches(git_in: Callable[..., str], repo: Path) -> list[str]:
    return sorted(git_in(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split())


def test_sigkill_mid_loop_resumes_without_repeating_a_step_or_a_command(
    tmp_path: Path, user_repo: Path, sim: SimulatorThread, git_in: Callable[..., str], bwrap: str
) -> None:
    count = "echo ran >> src/count.txt"
    steps = [
        {"tool": "run_command", "args": {"name": "shell", "command": count}},
        {"tool": "list_files", "args": {"path": "src"}},
        {"tool": "run_command", "args": {"name": "shell", "command": count}},
        {"tool": "read_file", "args": {"path": "src/count.txt"}},
        {"tool": "run_command", "args": {"name": "shell", "command": count}},
        {"tool": "finish", "args": {"summary": "counted three times"}},
    ]
    use_scenario(
        sim,
        {
            "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.6},
            "plan": one_stream(["src/**"]),
            "code": {"streams": {"work": steps}},
        },
    )
    home = tmp_path / "home"
    d = start(home, sim, "allow_shell = true\n")
    task_id = d.rpc("task/submit", {"goal": "Count", "repo": str(user_repo)})["result"]["task_id"]

    def mid_loop() -> bool:
        code = (task_of(d, task_id)["streams"] or [{}])[0].get("code") or {}
        return len(code.get("commands", [])) >= 1

    wait_for(mid_loop, timeout=60, interval=0.05)
    d.kill()
    assert (home / "worktrees" / task_id / "work").is_dir()  # the kill left it mid-work
    d = DaemonProcess(home).start()
    try:
        task = wait_ended(d, task_id, timeout=90.0)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    counted = git_in(user_repo, "show", f"tierd/{task_id}/_result:src/count.txt")
    assert counted == "ran\n" * 3  # each command ran exactly once, across the kill

    answered = Counter(
        c["step"]
        for c in stats(sim.url)["calls"]
        if c["purpose"] == "execute" and c["status"] == 200
    )
    assert answered and max(answered.values()) == 1, answered  # no step asked for twice
    assert len([s for s in answered if s and s.startswith("code:work:")]) == len(steps)

    assert branches(git_in, user_repo) == [f"tierd/{task_id}/_result"]
    assert git_in(user_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not (home / "worktrees" / task_id).exists()


def test_cancel_kills_a_running_command_and_leaves_nothing(
    tmp_path: Path, user_repo: Path, sim: SimulatorThread, git_in: Callable[..., str], bwrap: str
) -> None:
    marker = f"tierd-cancel-probe-{time.time_ns()}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(120)' {marker}"
    use_scenario(
        sim,
        {
            **FAST,
            "plan": one_stream(["src/**"]),
            "code": {
                "streams": {
                    "work": [{"tool": "run_command", "args": {"name": "shell", "command": sleeper}}]
                }
            },
        },
    )
    home = tmp_path / "home"
    d = start(home, sim, "allow_shell = true\n")
    try:
        task_id = d.rpc("task/submit", {"goal": "Sleep", "repo": str(user_repo)})["result"][
            "task_id"
        ]

        def running() -> bool:
            ps = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
            return ps.returncode == 0

        wait_for(running, timeout=60, interval=0.1)
        assert d.rpc("task/cancel", {"task_id": task_id})["result"]["state"] == "canceled"
        wait_for(lambda: not running(), timeout=15, interval=0.1)
        task = wait_ended(d, task_id, timeout=90.0)
        assert task["state"] == "canceled"
        wait_for(lambda: not branches(git_in, user_repo), timeout=15, interval=0.1)
    finally:
        d.stop()
    assert git_in(user_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not (home / "worktrees" / task_id).exists()


def test_setup_runs_once_before_the_executor_and_link_dirs_are_shared_read_only(
    tmp_path: Path, user_repo: Path, sim: SimulatorThread, git_in: Callable[..., str], bwrap: str
) -> None:
    # The user's ignored .venv has a "tool" the tests use; it is linked, not copied.
    (user_repo / ".venv" / "lib").mkdir(parents=True)
    (user_repo / ".venv" / "lib" / "helper.py").write_text("ANSWER = 42\n")
    test = (
        "import sys\nsys.path.insert(0, '.venv/lib')\nimport helper\n\n\n"
        "def test_helper():\n    assert helper.ANSWER == 42\n"
    )
    write_venv = "echo broken > .venv/lib/helper.py"
    steps = [
        {"tool": "write_file", "args": {"path": "tests/test_helper.py", "content": test}},
        {"tool": "run_command", "args": {"name": "shell", "command": write_venv}},
        {"tool": "run_command", "args": {"name": "test"}},
        {"tool": "finish", "args": {"summary": "tested with the shared venv"}},
    ]
    use_scenario(
        sim,
        {**FAST, "plan": one_stream(["tests/**"]), "code": {"streams": {"work": steps}}},
    )
    test_command = f"{PYTEST} tests/test_helper.py"
    code = (
        f"test_command = {json.dumps(test_command)}\nallow_shell = true\n"
        'link_dirs = [".venv"]\nsetup_command = "echo setting-up > setup-ran.txt"\n'
    )
    home = tmp_path / "home"
    d = start(home, sim, code)
    try:
        task_id = d.rpc("task/submit", {"goal": "Use the venv", "repo": str(user_repo)})["result"][
            "task_id"
        ]
        task = wait_ended(d, task_id, timeout=90.0)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    facts = task["streams"][0]["code"]
    assert facts["setup"]["exit_code"] == 0
    shell, tests = facts["commands"]
    assert shell["exit_code"] != 0  # the shared venv is read-only inside the sandbox
    assert tests["exit_code"] == 0, tests
    assert (user_repo / ".venv" / "lib" / "helper.py").read_text() == "ANSWER = 42\n"
    # What the setup made and the linked dir are the environment, not the stream's work.
    files = git_in(user_repo, "ls-tree", "-r", "--name-only", f"tierd/{task_id}/_result").split()
    assert "tests/test_helper.py" in files
    assert "setup-ran.txt" not in files and not any(f.startswith(".venv") for f in files)


def test_a_failing_setup_fails_its_stream_with_the_commands_output(
    tmp_path: Path, user_repo: Path, sim: SimulatorThread, git_in: Callable[..., str], bwrap: str
) -> None:
    use_scenario(sim, {**FAST, "plan": one_stream(["src/**"])})
    home = tmp_path / "home"
    d = start(home, sim, 'setup_command = "echo setup-broke-42; exit 3"\n')
    try:
        task_id = d.rpc("task/submit", {"goal": "Anything", "repo": str(user_repo)})["result"][
            "task_id"
        ]
        task = wait_ended(d, task_id, timeout=90.0)
    finally:
        d.stop()
    assert task["state"] == "failed"
    (stream,) = task["streams"]
    assert stream["state"] == "failed"
    assert "setup-broke-42" in stream["reason"] and "exited with 3" in stream["reason"]
    assert "setup-broke-42" in task["error"]
    assert not [c for c in stats(sim.url)["calls"] if c["purpose"] == "execute"]
    assert git_in(user_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
