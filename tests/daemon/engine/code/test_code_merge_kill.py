"""SIGKILL at the merge point, then a restart on the same home: the merge resumes, once.

- Killed during the final test run on the merged tree (the test command blocks there until
  the test releases it): the restarted daemon merges nothing again. The result branch holds
  exactly one merge of the two streams' branches, its tree is their merge, and only the
  interrupted command runs again: each run appends a line to a counter file in its worktree
  (ignored by git), so the streams' test runs (finished steps) have one line each, the
  result's two (the one killed, the one that finished).
- Killed while the orchestrator resolves a textual conflict in the merge worktree (the second
  of two, the first one committed): the resolution resumes from its saved steps (no model
  answer asked for twice, its shell command run once per resolution), the first resolution
  is not made again, and each stream's branch is merged exactly once, resolved.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import calc_conflict, code_stream, tool
from support.daemon import DaemonProcess, task_of, wait_ended, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator, stats, use_scenario

from daemon.tools.simulator.server import SimulatorThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}
CALC = "def add(a, b):\n    return a + b\n"
IGNORED = ".runs\n.entered\n.release\n.resolve-runs\n"
#: Counts its runs; on the merged tree (both streams' files) it waits for the test's release.
BLOCKING_TESTS = (
    "echo run >> .runs; if [ -f src/a.py ] && [ -f src/b.py ]; then touch .entered; "
    "while [ ! -e .release ]; do sleep 0.05; done; fi"
)


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "calc.py").write_text(CALC)
    (root / ".gitignore").write_text(IGNORED)
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        yield s


def start(home: Path, sim: SimulatorThread, code: str) -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim.url, f"[code]\nkeep_worktrees = true\n{code}")
    return DaemonProcess(home).start(timeout=120)


def heads(task: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["code"]["head"] for s in task["streams"]}


def merges_of(repo: Path, base: str, result: str) -> list[list[str]]:
    """The merge commits between `base` and `result`, oldest first: [commit, *parents]."""
    found = run_git(repo, "rev-list", "--reverse", "--merges", "--parents", f"{base}..{result}")
    return [line.split() for line in found.splitlines()]


def merged_once(repo: Path, result: str, branch_heads: list[str]) -> None:
    """Each stream's branch head is a parent of exactly one merge commit in the result's
    history (a dependent stream's own commit on top of its dependency is no merge)."""
    found = run_git(repo, "rev-list", "--merges", "--parents", result)
    merged = Counter(p for line in found.splitlines() for p in line.split()[1:])
    assert [merged[h] for h in branch_heads] == [1] * len(branch_heads), merged


def test_sigkill_during_the_final_test_run_resumes_without_a_second_merge(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    use_scenario(
        sim,
        {
            **FAST,
            "plan": {
                "streams": [
                    code_stream("a", "other", ["src/a.py"]),
                    code_stream("b", "other", ["src/b.py"]),
                ]
            },
            "code": {
                "streams": {
                    "a": [
                        tool("write_file", path="src/a.py", content="A = 1\n"),
                        tool("finish", summary="a"),
                    ],
                    "b": [
                        tool("write_file", path="src/b.py", content="B = 2\n"),
                        tool("finish", summary="b"),
                    ],
                }
            },
        },
    )
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    code = f"test_command = {json.dumps(BLOCKING_TESTS)}\n"
    d = start(home, sim, code)
    task_id = d.rpc("task/submit", {"goal": "Add a and b", "repo": str(repo)})["result"]["task_id"]
    result_wt = home / "worktrees" / task_id / "_result"
    try:
        wait_for((result_wt / ".entered").exists, timeout=400, interval=0.05)
        assert task_of(d, task_id)["state"] == "merging"
        merged_before = run_git(repo, "rev-parse", f"tierd/{task_id}/_result").strip()
    finally:
        d.kill()
    (result_wt / ".release").touch()
    d = start(home, sim, code)
    try:
        task = wait_ended(d, task_id)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    result = task["code"]["result"]
    assert result["head"] == merged_before  # the same merge commit, not a new one
    assert result["tests"]["exit_code"] == 0
    base = task["code"]["base_commit"]
    a, b = heads(task)["a"], heads(task)["b"]
    (merge,) = merges_of(repo, base, result["head"])
    assert merge[1:] == [a, b]
    merged_once(repo, result["head"], [a, b])
    # The same change as the two branches merged.
    tree = run_git(repo, "merge-tree", "--write-tree", a, b).split()[0]
    assert run_git(repo, "rev-parse", f"{result['head']}^{{tree}}").strip() == tree
    assert run_git(repo, "diff", "--name-only", base, result["head"]).split() == [
        "src/a.py",
        "src/b.py",
    ]
    # Finished steps ran once; the interrupted run once more.
    worktrees = home / "worktrees" / task_id
    assert (worktrees / "a" / ".runs").read_text() == "run\n"
    assert (worktrees / "b" / ".runs").read_text() == "run\n"
    assert (result_wt / ".runs").read_text() == "run\n" * 2


def test_sigkill_during_a_second_conflict_resolution_resumes_it_once(
    tmp_path: Path, sim: SimulatorThread, bwrap: str
) -> None:
    # Three streams edit one line: a and b at once, c after a (from a's version). Merged in
    # order, b conflicts with a, then c with that resolution: the daemon is killed during
    # the second resolution, after the first one was committed.
    resolved = "def add(a, b):\n    return a + b  # from a, b and c\n"
    resolution = [
        tool("run_command", name="shell", command="echo x >> .resolve-runs"),
        tool("read_file", path="src/calc.py"),
        tool("write_file", path="src/calc.py", content=resolved),
        tool("finish", summary="kept all"),
    ]
    streams, scripts = calc_conflict()
    use_scenario(
        sim,
        {
            **FAST,
            "purpose_latency": {"fix": 1.0},
            # a and b conflict in calc.py (calc_conflict); c, after a, edits it too.
            "plan": {"streams": [*streams, code_stream("c", "other", ["*.py"], ["a"])]},
            "code": {
                "streams": {
                    **scripts,
                    "c": [
                        tool("edit_file", path="src/calc.py", old="from a", new="from a and c"),
                        tool("finish", summary="c"),
                    ],
                    # Both resolutions follow this script (one stream, one round).
                    "fix:_result": resolution,
                }
            },
        },
    )
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    d = start(home, sim, "allow_shell = true\n")
    task_id = d.rpc("task/submit", {"goal": "Comment add", "repo": str(repo)})["result"]["task_id"]
    awaited = "fix-conflict-c:_result:r0:s1"
    try:
        # Killed while the second resolution awaits its model's second answer.
        wait_for(
            lambda: any(c["step"] == awaited for c in stats(sim.url)["calls"]),
            timeout=400,
            interval=0.05,
        )
    finally:
        d.kill()
    d = start(home, sim, "allow_shell = true\n")
    try:
        task = wait_ended(d, task_id)
    finally:
        d.stop()
    assert task["state"] == "completed", task.get("error")
    result = task["code"]["result"]
    assert run_git(repo, "show", f"{result['head']}:src/calc.py") == resolved
    a, b, c = (heads(task)[sid] for sid in ("a", "b", "c"))
    first, second = merges_of(repo, task["code"]["base_commit"], result["head"])
    assert first[1:] == [a, b] and second[1:] == [first[0], c]
    merged_once(repo, result["head"], [a, b, c])
    for merge in (first, second):  # each resolution committed resolved, none re-made
        assert "<<<<<<<" not in run_git(repo, "show", f"{merge[0]}:src/calc.py")
    result_wt = home / "worktrees" / task_id / "_result"
    assert (result_wt / ".resolve-runs").read_text() == "x\n" * 2  # once per resolution
    answered = Counter(
        c["step"] for c in stats(sim.url)["calls"] if c["purpose"] == "fix" and c["status"] == 200
    )
    expected = [f"fix-conflict-{o}:_result:r0:s{i}" for o in ("b", "c") for i in range(4)]
    assert sorted(answered) == expected
    assert max(answered.values()) == 1, answered
