"""Code tasks, part 2, end to end: review by tierd's own test runs, the merge point, and apply.

- A stream whose tests fail (as tierd runs them, whatever the model says) is never accepted:
  it goes back to its coder with the failing output, and is accepted once they pass.
- The accepted branches are merged into `tierd/<task>/_result` without touching the user's
  tree, the test command runs on the merged result, and the task waits for approval with the
  diff (`task/diff`, `GET /v1/tasks/{id}/diff`).
- `apply: "merge"` lands the change on the user's branch, beside their unrelated unstaged edit;
  applying again merges nothing more; afterwards no tierd branch or worktree is left.
- With the user's uncommitted edit in a file the result touches, `apply: "merge"` is refused
  (409 naming the file) and the edit is intact byte for byte; `apply: "patch"` writes a patch
  that applies.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import PYTEST, calc_conflict, code_stream, tool
from support.daemon import DaemonProcess, wait_ended, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator, stats, use_scenario

from daemon.tools.simulator.server import SimulatorThread

pytestmark = pytest.mark.slow

FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}
TEST_COMMAND = f"{PYTEST} tests"
FEATURE_TEST = (
    # The project's own test, written into the repository (not one of ours): it skips until
    # the implementation stream adds the module, so the tests stream's run is not a failure.
    "import pytest\n\n\ndef test_half():\n"
    "    feature = pytest.importorskip('src.feature')\n"
    "    assert feature.half(8) == 4\n"
)
CALC = "def add(a, b):\n    return a + b\n"


SCENARIO: dict[str, Any] = {
    **FAST,
    "watch": ["tierd ran the test command"],
    "plan": {
        "streams": [
            code_stream("tests", "tests", ["tests/test_feature.py"]),
            code_stream("impl", "implementation", ["src/feature.py", "src/calc.py"], ["tests"]),
        ]
    },
    "code": {
        "streams": {
            "tests": [
                tool("write_file", path="tests/test_feature.py", content=FEATURE_TEST),
                tool("finish", summary="a test for half()"),
            ],
            # Round 0: a bug, and a claim of success; tierd's test run says otherwise.
            "impl": [
                tool("write_file", path="src/feature.py", content="def half(x):\n    return x\n"),
                tool("edit_file", path="src/calc.py", old="a + b", new="b + a"),
                tool("finish", summary="half() added, all tests pass"),
            ],
            "impl@r1": [
                tool("edit_file", path="src/feature.py", old="return x", new="return x // 2"),
                tool("run_command", name="test"),
                tool("finish", summary="half() fixed"),
            ],
        }
    },
}


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "tests").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(
        "from src.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    (root / "notes.md").write_text("notes\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        yield s


@pytest.fixture
def daemon(tmp_path: Path, sim: SimulatorThread, bwrap: str) -> Iterator[DaemonProcess]:
    use_scenario(sim, SCENARIO)
    home = tmp_path / "home"
    home.mkdir()
    code = f'[code]\ntest_command = "{TEST_COMMAND}"\n\n[review]\napproval = "required"\n'
    write_config(home, sim.url, code)
    d = DaemonProcess(home).start()
    yield d
    d.stop()


def awaiting(d: DaemonProcess, repo: Path) -> dict[str, Any]:
    task_id = d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo)})["result"]["task_id"]

    def ready() -> dict[str, Any] | None:
        task = d.rpc("task/get", {"task_id": task_id})["result"]
        assert task["state"] not in {"failed", "canceled"}, task.get("error")
        return task if task["state"] == "awaiting_approval" else None

    return wait_for(ready, timeout=120, interval=0.2)


def tierd_branches(repo: Path) -> list[str]:
    return run_git(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split()


def test_failing_tests_send_a_stream_back_and_apply_merge_lands_the_change(
    tmp_path: Path, daemon: DaemonProcess, sim: SimulatorThread
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "notes.md").write_text("notes\nmy unstaged edit\n")  # untouched by the result
    task = awaiting(daemon, repo)
    task_id = task["id"]
    impl = next(s for s in task["streams"] if s["id"] == "impl")
    assert impl["state"] == "accepted" and impl["rounds"] == 2  # sent back once
    assert impl["code"]["test_run"]["exit_code"] == 0
    redo = [c for c in stats(sim.url)["calls"] if c["purpose"] == "execute" and c["round"] == 1]
    assert redo and "tierd ran the test command" in redo[0]["watched"]  # told why

    result = task["code"]["result"]
    assert result["branch"] == f"tierd/{task_id}/_result"
    assert result["tests"]["exit_code"] == 0
    assert sorted(result["files"]) == ["src/calc.py", "src/feature.py", "tests/test_feature.py"]
    assert run_git(repo, "rev-parse", "HEAD").strip() == task["code"]["base_commit"]

    diff = daemon.rpc("task/diff", {"task_id": task_id})["result"]
    assert {f["path"] for f in diff["files"]} == set(result["files"])
    with daemon.http() as h:
        patch = h.get(f"/v1/tasks/{task_id}/diff")
        listed = h.get(f"/v1/tasks/{task_id}/diff", headers={"Accept": "application/json"})
    assert patch.headers["content-type"].startswith("text/x-diff")
    assert "+    return x // 2" in patch.text and patch.text == diff["patch"]
    assert listed.json()["head"] == result["head"]

    decided = daemon.rpc(
        "task/approve", {"task_id": task_id, "decision": "approve", "apply": "merge"}
    )["result"]
    assert decided["applied"]["how"] == "merge" and decided["applied"]["branch"] == "main"
    merged = decided["applied"]["commit"]
    assert run_git(repo, "rev-parse", "HEAD").strip() == merged
    assert (repo / "src" / "feature.py").read_text() == "def half(x):\n    return x // 2\n"
    assert (repo / "notes.md").read_text() == "notes\nmy unstaged edit\n"
    assert len(run_git(repo, "rev-list", "--merges", "HEAD").split()) == 1

    done = wait_for(
        lambda: (
            (t := daemon.rpc("task/get", {"task_id": task_id})["result"])["state"] == "completed"
            and t
        ),
        timeout=30,
    )
    assert "half() fixed" in done["result"]
    wait_for(lambda: not tierd_branches(repo), timeout=15)
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    # Tests pass in the user's own tree, with the change applied.
    ran = subprocess.run(TEST_COMMAND, shell=True, cwd=repo, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout


def test_apply_never_overwrites_uncommitted_work_and_a_patch_applies(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    repo = make_repo(tmp_path / "repo")
    task = awaiting(daemon, repo)
    task_id = task["id"]
    mine = "def add(a, b):\n    return a + b  # my uncommitted edit\n"
    (repo / "src" / "calc.py").write_text(mine)
    head = run_git(repo, "rev-parse", "HEAD").strip()

    refused = daemon.rpc(
        "task/approve", {"task_id": task_id, "decision": "approve", "apply": "merge"}
    )
    assert refused["error"]["code"] == -32002
    assert refused["error"]["data"]["files"] == ["src/calc.py"]
    assert "uncommitted" in refused["error"]["message"]
    with daemon.http() as h:
        rest = h.post(
            f"/v1/tasks/{task_id}/approve", json={"decision": "approve", "apply": "merge"}
        )
    assert rest.status_code == 409
    assert (repo / "src" / "calc.py").read_text() == mine
    assert run_git(repo, "rev-parse", "HEAD").strip() == head
    assert daemon.rpc("task/get", {"task_id": task_id})["result"]["state"] == "awaiting_approval"

    decided = daemon.rpc(
        "task/approve", {"task_id": task_id, "decision": "approve", "apply": "patch"}
    )["result"]
    patch = Path(decided["applied"]["path"])
    assert patch.is_file() and (patch.stat().st_mode & 0o077) == 0
    # The patch applies to the base (the index still holds it: the user's edit is unstaged).
    check = subprocess.run(
        ["git", "-C", str(repo), "apply", "--cached", "--check", str(patch)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert (repo / "src" / "calc.py").read_text() == mine


def test_diff_of_a_text_task_is_a_clear_refusal(daemon: DaemonProcess) -> None:
    task_id = daemon.rpc("task/submit", {"goal": "Write a note"})["result"]["task_id"]
    got = daemon.rpc("task/diff", {"task_id": task_id})
    assert got["error"]["code"] == -32602 and got["error"]["data"]["field"] == "task_id"
    with daemon.http() as h:
        assert h.get(f"/v1/tasks/{task_id}/diff").status_code == 422


RESOLVED = "def add(a, b):\n    return a + b  # from a and b\n"
_STREAMS, _SCRIPTS = calc_conflict()
#: Two streams that conflict in calc.py; the orchestrator resolves it in three steps.
CONFLICT = {
    **FAST,
    "plan": {"streams": _STREAMS},
    "code": {
        "streams": {
            **_SCRIPTS,
            "_result": [
                tool("read_file", path="src/calc.py"),
                tool("write_file", path="src/calc.py", content=RESOLVED),
                tool("finish", summary="kept both"),
            ],
        }
    },
}


def conflicted_task(
    tmp_path: Path, sim: SimulatorThread, config: str = ""
) -> tuple[Path, dict[str, Any]]:
    """The conflicting task on a new repository, once it has ended: (repo, task)."""
    use_scenario(sim, CONFLICT)
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, sim.url, f'[code]\ntest_command = "{TEST_COMMAND}"\n{config}')
    repo = make_repo(tmp_path / "repo")
    d = DaemonProcess(home).start()
    try:
        task_id = d.rpc("task/submit", {"goal": "Comment add", "repo": str(repo)})["result"][
            "task_id"
        ]
        task = wait_ended(d, task_id, timeout=120)
    finally:
        d.stop()
    return repo, task


def test_a_textual_conflict_is_resolved_by_the_orchestrator_in_a_merge_worktree(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    repo, task = conflicted_task(tmp_path, sim)
    assert task["state"] == "completed", task.get("error")
    result = task["code"]["result"]
    assert run_git(repo, "show", f"{result['branch']}:src/calc.py") == RESOLVED
    parents = run_git(repo, "rev-list", "--parents", "-n", "1", result["head"]).split()
    assert len(parents) == 3  # the merge of the two streams' branches
    fixes = [c for c in stats(sim.url)["calls"] if c["purpose"] == "fix"]
    assert fixes and all(c["role"] == "orchestrator" for c in fixes)
    assert result["tests"]["exit_code"] == 0


def test_a_resolution_past_merge_max_steps_fails_the_task_naming_the_setting(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    _, task = conflicted_task(tmp_path, sim, "merge_max_steps = 2\n")
    assert task["state"] == "failed"
    assert "2 steps ([code] merge_max_steps)" in task["error"], task["error"]
    fixes = [c for c in stats(sim.url)["calls"] if c["purpose"] == "fix"]
    assert len(fixes) == 2
