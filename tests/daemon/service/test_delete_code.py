"""Deleting code tasks, on real repositories: their worktrees and tierd branches go, the result
branch the human approved as a branch stays (it is theirs), a patch written for them stays,
and nothing of the user's (their branches, index, working tree, uncommitted edits) changes.

Through a real daemon on the simulator (with `keep_worktrees`, so every worktree and branch of
the ended tasks is still there to delete); and, on the store and the repository directly, a
deletion cut short after its commit, finished by the next start's reconciliation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import adds_half
from support.daemon import DaemonProcess, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator

from daemon.engine.code.hygiene import reconcile
from daemon.store.store import Store, TaskRow

SCENARIO = adds_half({"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}, sid="work")


def make_repo(root: Path) -> Path:
    """A user's repository: main, a branch of their own, and work in progress."""
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("VALUE = 1\n")
    (root / "notes.md").write_text("notes\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    run_git(root, "branch", "mine")
    (root / "notes.md").write_text("notes\nmy edit in progress\n")
    (root / "src" / "app.py").write_text("VALUE = 2\n")
    run_git(root, "add", "src/app.py")  # staged
    (root / "scratch.txt").write_text("untracked\n")
    return root


def user_state(repo: Path) -> dict[str, Any]:
    """The user's files (bytes), index, HEAD and their own branches."""
    files = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    heads = run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
    return {
        "files": files,
        "index": (repo / ".git" / "index").read_bytes(),
        "HEAD": (repo / ".git" / "HEAD").read_bytes(),
        "branches": [
            line for line in heads.splitlines() if not line.startswith("refs/heads/tierd/")
        ],
    }


def tierd_branches(repo: Path, task_id: str) -> list[str]:
    listed = run_git(repo, "branch", "--list", f"tierd/{task_id}/*", "--format=%(refname:short)")
    return sorted(listed.split())


def worktrees_of(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in run_git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    home = tmp_path / "home"
    home.mkdir()
    with running_simulator(SCENARIO) as sim:
        write_config(home, sim.url, "[code]\nkeep_worktrees = true\n")
        d = DaemonProcess(home, logs=home).start()
        try:
            yield d
        finally:
            d.stop()
    log = (home / "daemon.err").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]


def run_to(d: DaemonProcess, repo: Path, wanted: str, **options: Any) -> str:
    reply = d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo), "options": options})
    task_id: str = reply["result"]["task_id"]

    def there() -> bool:
        task = d.rpc("task/get", {"task_id": task_id})["result"]
        assert task["state"] not in {"failed", "canceled"}, task.get("error")
        return bool(task["state"] == wanted)

    wait_for(there, timeout=120, interval=0.2)
    return task_id


def test_deleted_code_tasks_take_their_worktrees_and_branches_but_not_yours(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    repo = make_repo(tmp_path / "repo")
    before = user_state(repo)
    plain = run_to(daemon, repo, "completed")
    mine = run_to(daemon, repo, "awaiting_approval", approval="required")
    approved = daemon.rpc("task/approve", {"task_id": mine, "decision": "approve"})["result"]
    assert approved["applied"]["how"] == "branch"
    patched = run_to(daemon, repo, "awaiting_approval", approval="required")
    applied = daemon.rpc(
        "task/approve", {"task_id": patched, "decision": "approve", "apply": "patch"}
    )["result"]["applied"]
    for task_id in (mine, patched):
        wait_for(
            lambda t=task_id: (
                daemon.rpc("task/get", {"task_id": t})["result"]["state"] == "completed"
            )
        )
    for task_id in (plain, mine, patched):
        # keep_worktrees: the ended task's worktree and branches are all still there.
        assert tierd_branches(repo, task_id) == [
            f"tierd/{task_id}/_result",
            f"tierd/{task_id}/work",
        ]
        assert (daemon.home / "worktrees" / task_id / "work").is_dir()

    with daemon.http() as h:
        gone = {t: h.delete(f"/v1/tasks/{t}") for t in (plain, mine, patched)}
    assert all(r.status_code == 200 for r in gone.values()), {t: r.text for t, r in gone.items()}

    # The plain task's result was never approved: everything of it goes.
    body = gone[plain].json()
    assert body["removed"]["branches"] == [f"tierd/{plain}/_result", f"tierd/{plain}/work"]
    assert body["removed"]["worktrees"] >= 1 and body["kept"]["branch"] is None
    assert tierd_branches(repo, plain) == []
    # The result approved as a branch is the user's now: it stays.
    body = gone[mine].json()
    assert body["removed"]["branches"] == [f"tierd/{mine}/work"]
    assert body["kept"]["branch"] == f"tierd/{mine}/_result"
    assert tierd_branches(repo, mine) == [f"tierd/{mine}/_result"]
    # The patch written for the user stays; the result branch does not (the patch has it).
    body = gone[patched].json()
    assert body["kept"] == {"branch": None, "patch": applied["path"], "left": []}
    assert Path(applied["path"]).is_file() and tierd_branches(repo, patched) == []

    for task_id in (plain, mine, patched):
        assert not (daemon.home / "worktrees" / task_id).exists()
    assert worktrees_of(repo) == [str(repo.resolve())]
    # Nothing of the user's moved: files, index, HEAD, their branches.
    assert user_state(repo) == before


async def test_a_deletion_cut_short_after_its_commit_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "home" / "worktrees"
    base = run_git(repo, "rev-parse", "main").strip()
    for task_id in ("tcut", "tkept"):
        for name in ("work", "_result"):
            run_git(repo, "branch", f"tierd/{task_id}/{name}", base)
    run_git(repo, "branch", "tierd/tstranger/work", base)  # another home's
    run_git(repo, "worktree", "add", "-q", str(root / "tcut" / "work"), "tierd/tcut/work")
    store = Store(f"sqlite:///{tmp_path / 'tierd.db'}")
    await store.open()
    try:
        result = {"head": base}
        for task_id, how in (("tcut", "merge"), ("tkept", "branch")):
            code = {
                "repo": str(repo),
                "base": "HEAD",
                "base_commit": base,
                "result": {**result, "branch": f"tierd/{task_id}/_result"},
                "applied": {"how": how, "head": base},
            }
            row = TaskRow(
                id=task_id,
                state="completed",
                goal="g",
                created_at=1.0,
                updated_at=1.0,
                code_json=json.dumps(code),
            )
            await store.create_task(row)
            # The rows go; the daemon dies before it reaches the repository.
            await store.delete_ended_task(task_id)
        before = user_state(repo)
        await reconcile(store, root)
    finally:
        await store.close()
    assert tierd_branches(repo, "tcut") == []
    assert tierd_branches(repo, "tkept") == ["tierd/tkept/_result"]
    assert tierd_branches(repo, "tstranger") == ["tierd/tstranger/work"]
    assert not (root / "tcut").exists() and worktrees_of(repo) == [str(repo.resolve())]
    assert user_state(repo) == before
