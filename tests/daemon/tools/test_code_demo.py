"""`tierd demo --code` (daemon/tools/code_demo.py): offline, a real repository, real pytest in
the sandbox; the task completes, one stream is sent back by tierd's own test run, the merged
change lands on the project's branch by `apply: "merge"`, and the project's tests pass there.

The demo runs as a subprocess (`python -m daemon.tools.code_demo`, what `tierd demo --code`
calls) with its temporary files under the test's own directory: once with `--json --keep` to
check the task and the repository it leaves, once as text to check what it prints and that it
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import ROOT
from support.git import run_git

from daemon.config.layers import load_defaults, read_layer
from daemon.tools import code_demo
from daemon.tools.code_demo import (
    PROJECT,
    code_config,
    make_project,
    project_test_command,
    run_pytest,
    step_lines,
)

STREAMS = {"tests", "discounts", "money", "receipt"}
NEW_FILES = [
    "shop/discounts.py",
    "shop/money.py",
    "shop/receipt.py",
    "tests/test_discounts.py",
    "tests/test_money.py",
    "tests/test_receipt.py",
]


@pytest.fixture(scope="module")
def bwrap() -> str:
    """The demo's tests run in bubblewrap: FAIL (never skip) where it is missing."""
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail(
            "bubblewrap is not installed (no 'bwrap' on PATH): the code demo needs the "
            "package 'bubblewrap' (apt-get install -y bubblewrap)"
        )
    return found


def demo_env(tmp: Path) -> dict[str, str]:
    """No API keys, temporary files under `tmp`, a TIERD_HOME the demo must not touch."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    (tmp / "user-home").mkdir()
    env.update(TMPDIR=str(tmp), TIERD_HOME=str(tmp / "user-home"), COLUMNS="120")
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the demo sets it for itself
    return env


def run_demo(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.tools.code_demo", *args],
        cwd=ROOT,
        env=demo_env(tmp),
        capture_output=True,
        text=True,
        timeout=180,
    )


def processes_in(tmp: Path) -> list[int]:
    """Processes whose working directory is under `tmp` (the demo's daemon runs in its home)."""
    found = []
    for p in psutil.process_iter(["cwd"]):
        cwd = p.info.get("cwd") or ""
        if cwd.startswith(str(tmp)) and p.pid != os.getpid():
            found.append(p.pid)
    return found


# --- the pieces, without a daemon -----------------------------------------------------------


def test_the_project_is_a_git_repository_whose_tests_pass(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "shop")
    assert run_git(repo, "status", "--porcelain") == ""
    assert sorted(run_git(repo, "ls-files").split()) == sorted(PROJECT)
    ran = run_pytest(repo)
    assert ran.exit_code == 0, ran.output
    assert ran.summary.startswith("4 passed")


def test_the_config_sets_the_test_command_and_requires_approval(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(code_config("http://127.0.0.1:1234/v1"))
    layer = read_layer("global", path, load_defaults())
    assert layer.values["code.test_command"] == project_test_command()
    assert sys.executable in project_test_command()
    assert layer.values["review.approval"] == "required"
    assert layer.values["models.executor.api_base"] == "http://127.0.0.1:1234/v1"


def test_step_lines_tell_each_round_and_how_it_ended() -> None:
    def step(sid: str, n: int, tool: str, **more: Any) -> dict[str, Any]:
        return {"type": "tool.step", "data": {"stream_id": sid, "step": n, "tool": tool, **more}}

    def state(sid: str, st: str, **more: Any) -> dict[str, Any]:
        return {"type": "stream.state", "data": {"stream_id": sid, "state": st, **more}}

    events = [
        state("a", "running"),
        step("a", 1, "write_file", path="a.py", ok=True),
        step("a", 2, "finish", ok=True),
        state("a", "running", verdict="redo", reason="the tests fail"),
        step("a", 1, "run_command", command="pytest", exit_code=0, ok=True),
        state("a", "accepted", verdict="accept"),
        {"type": "task.state", "data": {"state": "running"}},
    ]
    assert step_lines(events) == {
        "a": [
            "round 1: write_file a.py, finish -> sent back: the tests fail",
            "round 2: run_command exit 0 -> accepted",
        ]
    }


def test_without_bubblewrap_the_demo_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(code_demo.tempfile, "tempdir", str(tmp_path))
    real_which = shutil.which
    monkeypatch.setattr(
        code_demo.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    assert code_demo.run_code_demo(json_out=True) == 1
    assert "'bubblewrap'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone


# --- the whole demo -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("code-demo-json")
    proc = run_demo(tmp, "--json", "--keep")
    assert proc.returncode == 0, proc.stderr
    yield {"task": json.loads(proc.stdout), "stderr": proc.stderr, "tmp": tmp}


@pytest.mark.slow
def test_the_task_completes_with_one_stream_sent_back_by_the_tests(
    json_run: dict[str, Any],
) -> None:
    task = json_run["task"]
    assert task["state"] == "completed", task["error"]
    assert "simulated" in json_run["stderr"]
    streams = {s["id"]: s for s in task["streams"]}
    assert set(streams) == STREAMS
    assert all(s["state"] == "accepted" for s in streams.values())
    rounds = {sid: s["rounds"] for sid, s in streams.items()}
    assert rounds == {"tests": 1, "discounts": 2, "money": 1, "receipt": 1}
    # tierd ran the tests itself, in the sandbox, on each stream's worktree.
    for s in streams.values():
        assert s["code"]["test_run"]["exit_code"] == 0
        assert "passed" in s["code"]["test_run"]["output"]
    steps = task["demo"]["steps"]
    assert steps["discounts"][0].endswith("-> sent back: the tests fail")
    assert "edit_file shop/discounts.py" in steps["discounts"][1]
    assert steps["discounts"][1].endswith("-> accepted")
    result = task["code"]["result"]
    assert sorted(result["files"]) == NEW_FILES
    assert result["tests"]["exit_code"] == 0


@pytest.mark.slow
def test_the_merge_is_applied_to_the_project_and_its_tests_pass_there(
    json_run: dict[str, Any],
) -> None:
    task, tmp = json_run["task"], json_run["tmp"]
    demo = task["demo"]
    repo = Path(demo["repo"])
    assert repo.is_relative_to(tmp) and demo["kept"]
    applied = demo["applied"]
    assert applied["how"] == "merge" and applied["branch"] == "main"
    assert task["code"]["applied"] == applied
    commit = applied["commit"]
    assert run_git(repo, "cat-file", "-t", commit).strip() == "commit"
    assert run_git(repo, "rev-parse", "main").strip() == commit
    parents = run_git(repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]
    assert parents[0] == task["code"]["base_commit"]
    assert parents[1] == task["code"]["result"]["head"]
    changed = run_git(repo, "diff", "--name-only", task["code"]["base_commit"], commit).split()
    assert sorted(changed) == NEW_FILES
    assert run_git(repo, "status", "--porcelain") == ""
    assert run_git(repo, "branch", "--list", "tierd/*") == ""  # the task's branches are gone
    assert demo["pytest_before"]["exit_code"] == 0
    assert demo["pytest_after"] == {"exit_code": 0, "summary": demo["pytest_after"]["summary"]}
    assert demo["pytest_after"]["summary"].startswith("11 passed")
    ran = run_pytest(repo)  # and once more here, by the test itself
    assert ran.exit_code == 0 and ran.summary.startswith("11 passed"), ran.output
    assert list((tmp / "user-home").iterdir()) == []  # the user's home was never touched


@pytest.mark.slow
def test_the_text_output_names_the_tool_steps_and_the_diff_and_cleans_up(
    tmp_path: Path, bwrap: str
) -> None:
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    text = proc.stdout
    assert "The models are simulated" in text
    # The live view's last frame: each stream's latest tool step.
    assert "#4 finish" in text
    # Every stream's tool steps, by round, and tierd sending one back.
    for words in (
        "write_file tests/test_discounts.py",
        "write_file shop/discounts.py, finish -> sent back: the tests fail",
        "edit_file shop/discounts.py, run_command exit 0, finish -> accepted",
        "write_file shop/money.py",
        "search shop",
        "write_file shop/receipt.py",
    ):
        assert words in " ".join(text.split()), words
    # The diff summary (task/diff), the merge and the final test run.
    assert "shop/receipt.py  +17 -0" in text
    assert "6 file(s) changed, +97 -0" in text
    assert "applied: merge into branch main as commit" in text
    assert "pytest in the project now: 11 passed" in text
    # Nothing left behind: no temporary directory, no process, the user's home untouched.
    assert sorted(tmp_path.glob("tierd-code-demo-*")) == []
    assert processes_in(tmp_path) == []
    assert list((tmp_path / "user-home").iterdir()) == []
