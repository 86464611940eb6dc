"""A review's "fix" on a code stream, end to end: the orchestrator fixes the stream itself.

- The review says "fix": the orchestrator runs its own tool loop (role orchestrator, purpose
  fix) in the stream's worktree, tierd commits the change on the stream's branch and runs the
  tests itself; they pass, so the stream is accepted as fixed by the orchestrator (its state,
  verdict, reason, summary, facts and commit say so) and no executor is asked again.
- A fix whose tests fail is never accepted: it becomes a redo with the test output, the
  executor's next round sees the fix in its worktree and the failing output.
- SIGKILL in the middle of the fix: the restarted daemon resumes it without asking a model
  twice or running a finished command again (a counting command's file has one line).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.code_plans import PYTEST, code_stream, tool
from support.daemon import DaemonProcess, task_of, wait_ended, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator, stats, use_scenario

from daemon.tools.simulator.server import SimulatorThread

#: Generous: a daemon's tasks run slowly on a loaded machine (no timing is asserted).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}
TEST_COMMAND = f"{PYTEST} tests"
FEATURE_TEST = "from src.feature import half\n\n\ndef test_half():\n    assert half(8) == 4\n"
BUGGY = "def half(x):\n    return x\n"
DEFECT = "half() returns x unchanged; in src/feature.py it must return x // 2"
PLAN = {"streams": [code_stream("impl", "other", ["src/**"])]}
IMPL = [
    tool("write_file", path="src/feature.py", content=BUGGY),
    tool("finish", summary="half() added"),
]


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "tests").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "tests" / "test_feature.py").write_text(FEATURE_TEST)
    (root / "notes.md").write_text("notes\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        yield s


def start(home: Path, sim: SimulatorThread, extra: str = "") -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim.url, f'[code]\ntest_command = "{TEST_COMMAND}"\n{extra}')
    return DaemonProcess(home).start(timeout=120)


def submit(d: DaemonProcess, repo: Path) -> str:
    task_id: str = d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo)})["result"][
        "task_id"
    ]
    return task_id


def test_a_fix_verdict_is_made_by_the_orchestrator_with_tools_and_tested_by_tierd(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    use_scenario(
        sim,
        {
            **FAST,
            "plan": PLAN,
            "streams": {"impl": {"review": ["fix"], "reason": DEFECT}},
            "code": {
                "streams": {
                    "impl": IMPL,
                    "fix:impl": [
                        tool("read_file", path="src/feature.py"),
                        tool(
                            "edit_file", path="src/feature.py", old="return x", new="return x // 2"
                        ),
                        tool("run_command", name="test"),
                        tool("finish", summary="half() now halves"),
                    ],
                }
            },
        },
    )
    repo = make_repo(tmp_path / "repo")
    d = start(tmp_path / "home", sim)
    try:
        task_id = submit(d, repo)
        task = wait_ended(d, task_id)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    (impl,) = task["streams"]
    assert impl["state"] == "fixed" and impl["verdict"] == "fix" and impl["rounds"] == 1
    assert impl["reason"].startswith("fixed by the orchestrator")
    assert "Fixed by the orchestrator (review round 1): half() now halves" in impl["output"]
    facts = impl["code"]
    (fix,) = facts["fixes"]
    assert fix["by"] == "orchestrator" and fix["outcome"] == "fix" and fix["steps"] == 4
    assert DEFECT in fix["problem"]
    assert [c["exit_code"] for c in fix["commands"]] == [0]  # its own run of the tests
    assert fix["test_run"]["exit_code"] == 0 and facts["test_run"]["exit_code"] == 0
    assert facts["head"] == fix["head"]

    # The fix is on the stream's branch, in a commit of the orchestrator's, and in the result.
    log = run_git(repo, "log", "--format=%an|%B", f"{facts['start_commit']}..{facts['head']}")
    assert log.count("|") == 2 and log.startswith("tierd (orchestrator,")
    assert "Tierd-Fixed-By: orchestrator" in log
    result = task["code"]["result"]
    run_git(repo, "merge-base", "--is-ancestor", facts["head"], result["head"])
    assert run_git(repo, "show", f"{result['branch']}:src/feature.py") == (
        "def half(x):\n    return x // 2\n"
    )
    assert result["tests"]["exit_code"] == 0

    calls = stats(sim.url)["calls"]
    fixes = [c for c in calls if c["purpose"] == "fix"]
    assert len(fixes) == 4 and all(c["role"] == "orchestrator" and c["tools"] for c in fixes)
    assert {c["step"] for c in fixes} == {f"fix:impl:r0:s{i}" for i in range(4)}
    assert not [c for c in calls if c["purpose"] == "execute" and c["round"] > 0]


def test_a_fix_whose_tests_fail_is_sent_back_as_a_redo_with_the_output(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    use_scenario(
        sim,
        {
            **FAST,
            "watch": ["tierd ran the test command", "It fixed this itself", "x + 0"],
            "plan": PLAN,
            "streams": {"impl": {"review": ["fix"], "reason": DEFECT}},
            "code": {
                "streams": {
                    "impl": IMPL,
                    # A wrong fix: the tests still fail.
                    "fix:impl": [
                        tool(
                            "edit_file", path="src/feature.py", old="return x", new="return x + 0"
                        ),
                        tool("finish", summary="half() fixed"),
                    ],
                    "impl@r1": [
                        tool("read_file", path="src/feature.py"),
                        tool("edit_file", path="src/feature.py", old="x + 0", new="x // 2"),
                        tool("finish", summary="half() halves, for real"),
                    ],
                }
            },
        },
    )
    repo = make_repo(tmp_path / "repo")
    d = start(tmp_path / "home", sim)
    try:
        task = wait_ended(d, submit(d, repo))
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    (impl,) = task["streams"]
    assert impl["state"] == "accepted" and impl["rounds"] == 2  # never accepted as fixed
    (fix,) = impl["code"]["fixes"]
    assert fix["outcome"] == "redo" and fix["test_run"]["exit_code"] != 0
    assert impl["code"]["test_run"]["exit_code"] == 0  # the executor's round 1, tested

    calls = stats(sim.url)["calls"]
    redo = [c for c in calls if c["purpose"] == "execute" and c["round"] == 1]
    assert redo
    first = redo[0]["watched"]
    assert "tierd ran the test command" in first and "It fixed this itself" in first
    # The executor read the orchestrator's change from its worktree.
    assert any("x + 0" in r for c in redo for r in c["new_results"])
    result = task["code"]["result"]
    assert run_git(repo, "show", f"{result['branch']}:src/feature.py") == (
        "def half(x):\n    return x // 2\n"
    )


def test_sigkill_mid_fix_resumes_without_repeating_a_step_or_a_command(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    count = "echo fix >> src/count.txt"
    fix_steps = [
        tool("run_command", name="shell", command=count),
        tool("list_files", path="src"),
        tool("edit_file", path="src/feature.py", old="return x", new="return x // 2"),
        tool("run_command", name="shell", command=count),
        tool("finish", summary="half() halves"),
    ]
    use_scenario(
        sim,
        {
            **FAST,
            "purpose_latency": {"fix": 0.6},
            "plan": PLAN,
            "streams": {"impl": {"review": ["fix"], "reason": DEFECT}},
            "code": {"streams": {"impl": IMPL, "fix:impl": fix_steps}},
        },
    )
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    d = start(home, sim, "allow_shell = true\n")
    task_id = submit(d, repo)

    def mid_fix() -> bool:
        streams = task_of(d, task_id)["streams"]
        fixes = ((streams or [{}])[0].get("code") or {}).get("fixes") or []
        return bool(fixes) and len(fixes[0]["commands"]) >= 1

    wait_for(mid_fix, timeout=300, interval=0.05)
    d.kill()
    d = start(home, sim, "allow_shell = true\n")
    try:
        task = wait_ended(d, task_id)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    (impl,) = task["streams"]
    assert impl["state"] == "fixed"
    branch = task["code"]["result"]["branch"]
    assert run_git(repo, "show", f"{branch}:src/count.txt") == "fix\n" * 2  # once each
    assert run_git(repo, "show", f"{branch}:src/feature.py") == "def half(x):\n    return x // 2\n"
    answered = Counter(
        c["step"] for c in stats(sim.url)["calls"] if c["purpose"] == "fix" and c["status"] == 200
    )
    assert sorted(answered) == [f"fix:impl:r0:s{i}" for i in range(len(fix_steps))]
    assert max(answered.values()) == 1, answered  # no fix step asked for twice
