"""Applying a code task's result with `apply: "merge"`, durably, on a real repository and store.

The protocol (`daemon.engine.code.apply`): the merge commit is made and recorded with the task
before the user's branch moves; the branch then fast-forwards to it. These tests stop it
where a kill would (git refusing at the moment the branch would move, because another git
holds the index lock) and finish it by hand the way the surviving git process would, then
check that a retry and the daemon's start both find the merge, and nothing merges twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.git import run_git

from daemon.engine.code.apply import reconcile_applies
from daemon.service.code_result import apply_result
from daemon.service.errors import InvalidState
from daemon.store.store import Store, TaskRow

FEATURE = "def half(x):\n    return x // 2\n"


def make_repo(root: Path) -> tuple[Path, str, str]:
    """A user's repository on main, and a result commit on a tierd branch: (repo, base, head)."""
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "notes.md").write_text("notes\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    base = run_git(root, "rev-parse", "HEAD").strip()
    run_git(root, "checkout", "-q", "-b", "tierd/t1/_result")
    (root / "feature.py").write_text(FEATURE)
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "result")
    head = run_git(root, "rev-parse", "HEAD").strip()
    run_git(root, "checkout", "-q", "main")
    (root / "notes.md").write_text("notes\nmy edit\n")  # the user's uncommitted work
    return root, base, head


async def open_store(tmp_path: Path, repo: Path, base: str, head: str) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    code = {
        "repo": str(repo),
        "base": "HEAD",
        "base_commit": base,
        "result": {"branch": "tierd/t1/_result", "head": head, "files": ["feature.py"]},
    }
    row = TaskRow(
        id="t1",
        state="awaiting_approval",
        goal="Add half()",
        created_at=1.0,
        updated_at=1.0,
        code_json=json.dumps(code),
    )
    await store.create_task(row)
    return store


async def code_of(store: Store) -> dict[str, Any]:
    row = await store.get_task("t1")
    assert row is not None and row.code_json
    data: dict[str, Any] = json.loads(row.code_json)
    return data


async def row_of(store: Store) -> TaskRow:
    row = await store.get_task("t1")
    assert row is not None
    return row


def merges(repo: Path) -> list[str]:
    return run_git(repo, "rev-list", "--merges", "main").split()


async def test_a_merge_stopped_before_the_branch_moved_is_recorded_and_found_again(
    tmp_path: Path,
) -> None:
    repo, base, head = make_repo(tmp_path / "repo")
    store = await open_store(tmp_path, repo, base, head)
    patches = tmp_path / "patches"
    try:
        lock = repo / ".git" / "index.lock"
        lock.write_text("")  # another git is inside the repository
        with pytest.raises(InvalidState) as refused:
            await apply_result(await row_of(store), "merge", patches, store)
        assert "index.lock" in str(refused.value)
        intent = (await code_of(store))["applying"]
        assert intent["onto"] == base and intent["head"] == head and intent["branch"] == "main"
        # Recorded, but nothing of the user's moved.
        assert run_git(repo, "rev-parse", "main").strip() == base and not merges(repo)
        parents = run_git(repo, "rev-list", "--parents", "-n", "1", intent["commit"]).split()
        assert parents[1:] == [base, head]

        # The git that held the lock finishes the very merge that was recorded.
        lock.unlink()
        run_git(repo, "merge", "--ff-only", "--quiet", intent["commit"])

        again = await apply_result(await row_of(store), "merge", patches, store)
        assert again == {
            "how": "merge",
            "branch": "main",
            "commit": intent["commit"],
            "head": head,
            "already": True,
        }
        # Whatever the retry asks for: the result is in the user's branch already.
        as_branch = await apply_result(await row_of(store), "branch", patches, store)
        assert as_branch["how"] == "merge" and as_branch["already"] is True
        assert merges(repo) == [intent["commit"]]
        assert (repo / "notes.md").read_text() == "notes\nmy edit\n"
        assert (repo / "feature.py").read_text() == FEATURE
    finally:
        await store.close()


async def test_a_retry_before_the_merge_landed_lands_the_recorded_commit(tmp_path: Path) -> None:
    repo, base, head = make_repo(tmp_path / "repo")
    store = await open_store(tmp_path, repo, base, head)
    try:
        lock = repo / ".git" / "index.lock"
        lock.write_text("")
        with pytest.raises(InvalidState):
            await apply_result(await row_of(store), "merge", tmp_path, store)
        recorded = (await code_of(store))["applying"]["commit"]
        lock.unlink()  # that git died without merging
        applied = await apply_result(await row_of(store), "merge", tmp_path, store)
        assert applied["commit"] == recorded and "already" not in applied
        assert run_git(repo, "rev-parse", "main").strip() == recorded
        assert merges(repo) == [recorded]
        assert run_git(repo, "status", "--porcelain").splitlines() == [" M notes.md"]
    finally:
        await store.close()


async def test_the_start_records_an_approval_whose_merge_landed(tmp_path: Path) -> None:
    repo, base, head = make_repo(tmp_path / "repo")
    store = await open_store(tmp_path, repo, base, head)
    try:
        lock = repo / ".git" / "index.lock"
        lock.write_text("")
        with pytest.raises(InvalidState):
            await apply_result(await row_of(store), "merge", tmp_path, store)
        assert await reconcile_applies(store) == []  # not landed: nothing to record
        assert await store.get_step("t1", "approval:0") is None

        intent = (await code_of(store))["applying"]
        lock.unlink()
        run_git(repo, "merge", "--ff-only", "--quiet", intent["commit"])
        assert await reconcile_applies(store) == ["t1"]
        assert await store.get_step("t1", "approval:0") == {
            "decision": "approve",
            "comment": None,
        }
        applied = (await code_of(store))["applied"]
        assert applied["commit"] == intent["commit"] and applied["head"] == head
        # A second start finds the decision already taken: nothing is recorded twice.
        assert await reconcile_applies(store) == ["t1"]
        events = await store.events_after(0, "t1")
        applied_events = [e for e in events if e["type"] == "task.applied"]
        assert len(applied_events) == 1
        assert merges(repo) == [intent["commit"]]
    finally:
        await store.close()
