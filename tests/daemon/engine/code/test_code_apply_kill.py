"""SIGKILL while an approval merges the result into the user's branch (`apply: "merge"`).

How the test knows the daemon is inside the apply: tierd's git never runs the user's hooks
(`core.hooksPath=/dev/null`: a hook cannot hold the daemon), but it does run their checkout
filters, which their working tree needs (git-lfs, say). A smudge filter on the file the
result adds (configured in the repository, as a user would) signals that git is writing the
user's working tree and blocks until the test releases it. The daemon is killed right then;
the git process it started runs in a session of its own and outlives it, holding the
repository's index.lock, exactly as after a real crash.

- Approving again while that git still holds the lock is refused (409, naming the lock), and
  changes nothing; once it finished, approving again reports the merge as already applied
  and records it; a third approval is refused and says the result was applied.
- If the merge lands while the daemon is down, the restarted daemon records the approval by
  itself and the task completes.
Either way: exactly one merge commit on the user's branch (parents: their commit and the
result), their uncommitted edit and untracked file intact byte for byte, the result applied.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import HALF, adds_half
from support.daemon import DaemonProcess, task_of, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator, use_scenario

from daemon.tools.simulator.server import SimulatorThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}
FEATURE = HALF
SCENARIO = adds_half(FAST["latency"])
MY_EDIT = "notes\nmy uncommitted edit\n"
UNTRACKED = "my scratch file\n"


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "notes.md").write_text("notes\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    # The user's work in progress, in files the result does not touch.
    (root / "notes.md").write_text(MY_EDIT)
    (root / "scratch.txt").write_text(UNTRACKED)
    return root


class Pause:
    """A smudge filter on src/feature.py that says when git runs it and waits for release."""

    def __init__(self, tmp: Path, repo: Path) -> None:
        self.entered = tmp / "filter-entered"
        self.release = tmp / "filter-release"
        script = tmp / "pause-filter.sh"
        script.write_text(
            "#!/bin/sh\n"
            f"touch '{self.entered}'\n"
            f"while [ ! -e '{self.release}' ]; do sleep 0.05; done\n"
            "exec cat\n"
        )
        script.chmod(0o755)
        self.repo = repo
        self.script = script

    def arm(self) -> None:
        run_git(self.repo, "config", "filter.tierdpause.smudge", str(self.script))
        info = self.repo / ".git" / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text("src/feature.py filter=tierdpause\n")

    def free(self) -> None:
        self.release.touch()


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        use_scenario(s, SCENARIO)
        yield s


def start(home: Path, sim: SimulatorThread) -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim.url, '[review]\napproval = "required"\n')
    return DaemonProcess(home).start(timeout=120)


def in_state(d: DaemonProcess, task_id: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        task = task_of(d, task_id)
        assert task["state"] not in {"failed", "canceled"}, task.get("error")
        return task if task["state"] == state else None

    return wait_for(reached, timeout=400, interval=0.2)


def approve(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    return d.rpc("task/approve", {"task_id": task_id, "decision": "approve", "apply": "merge"})


def killed_mid_apply(
    tmp_path: Path, sim: SimulatorThread, repo: Path, pause: Pause
) -> tuple[Path, str, dict[str, Any]]:
    """A task whose approval is killed while git writes the user's working tree; returns the
    daemon's home, the task id and the intent the daemon recorded before touching the repo."""
    home = tmp_path / "home"
    d = start(home, sim)
    try:
        task_id = d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo)})["result"][
            "task_id"
        ]
        in_state(d, task_id, "awaiting_approval")
        pause.arm()
        # The approval's answer never comes: the daemon dies while it applies.
        threading.Thread(target=lambda: _quietly(approve, d, task_id), daemon=True).start()
        wait_for(pause.entered.exists, timeout=120, interval=0.05)
        intent = task_of(d, task_id)["code"]["applying"]
    finally:
        d.kill()
    assert (repo / ".git" / "index.lock").exists()  # git is inside the merge, holding it
    assert run_git(repo, "rev-parse", "main").strip() == intent["onto"]
    return home, task_id, intent


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # the daemon was killed under the request
        pass


def check_landed_once(repo: Path, intent: dict[str, Any], result_head: str) -> None:
    assert run_git(repo, "rev-parse", "main").strip() == intent["commit"]
    merges = run_git(repo, "rev-list", "--merges", "main").split()
    assert merges == [intent["commit"]]
    parents = run_git(repo, "rev-list", "--parents", "-n", "1", intent["commit"]).split()[1:]
    assert parents == [intent["onto"], result_head]
    assert (repo / "src" / "feature.py").read_text() == FEATURE
    assert (repo / "notes.md").read_text() == MY_EDIT
    assert (repo / "scratch.txt").read_text() == UNTRACKED
    status = run_git(repo, "status", "--porcelain").splitlines()
    assert sorted(status) == [" M notes.md", "?? scratch.txt"]
    assert not (repo / ".git" / "index.lock").exists()


def test_approving_again_after_a_kill_mid_apply_never_merges_twice(
    tmp_path: Path, sim: SimulatorThread
) -> None:
    repo = make_repo(tmp_path / "repo")
    pause = Pause(tmp_path, repo)
    try:
        home, task_id, intent = killed_mid_apply(tmp_path, sim, repo, pause)
        d = start(home, sim)
        try:
            task = task_of(d, task_id)
            assert task["state"] == "awaiting_approval"  # nothing landed yet
            head = task["code"]["result"]["head"]
            # The killed daemon's git still holds the repository: a retry changes nothing.
            busy = approve(d, task_id)
            assert busy["error"]["code"] == -32002, busy
            assert "index.lock" in busy["error"]["message"]
            assert run_git(repo, "rev-parse", "main").strip() == intent["onto"]

            pause.free()  # that git finishes the merge it started
            wait_for(
                lambda: run_git(repo, "rev-parse", "main").strip() == intent["commit"],
                timeout=60,
            )
            decided = approve(d, task_id)["result"]
            assert decided["applied"]["already"] is True
            assert decided["applied"]["commit"] == intent["commit"]
            done = in_state(d, task_id, "completed")
            assert done["code"]["applied"]["commit"] == intent["commit"]

            again = approve(d, task_id)
            assert again["error"]["code"] == -32002
            assert "already applied" in again["error"]["message"]
            assert intent["commit"][:12] in again["error"]["message"]
        finally:
            d.stop()
    finally:
        pause.free()
    check_landed_once(repo, intent, head)


def test_a_merge_that_landed_while_the_daemon_was_down_is_recorded_at_restart(
    tmp_path: Path, sim: SimulatorThread
) -> None:
    repo = make_repo(tmp_path / "repo")
    pause = Pause(tmp_path, repo)
    try:
        home, task_id, intent = killed_mid_apply(tmp_path, sim, repo, pause)
        pause.free()
        wait_for(lambda: run_git(repo, "rev-parse", "main").strip() == intent["commit"], timeout=60)
        d = start(home, sim)
        try:
            done = in_state(d, task_id, "completed")  # no second approval needed
            applied = done["code"]["applied"]
            assert applied["how"] == "merge" and applied["commit"] == intent["commit"]
            again = approve(d, task_id)
            assert again["error"]["code"] == -32002
            assert "already applied" in again["error"]["message"]
            # Applied into the user's branch: no tierd branch is kept.
            wait_for(lambda: not run_git(repo, "branch", "--list", "tierd/*").strip(), timeout=60)
        finally:
            d.stop()
    finally:
        pause.free()
    check_landed_once(repo, intent, done["code"]["result"]["head"])
