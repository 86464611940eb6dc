"""Worktrees and branches of code tasks on a real repository: made from a base or from merged
dependencies, committed, removed, reconciled; the user's repository never changes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.engine.code.worktrees import (
    MergeConflict,
    RepoError,
    WorktreeManager,
    branch_name,
    validate_repo,
)

Git = Callable[..., str]


def branches(git_in: Git, repo: Path) -> list[str]:
    return git_in(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split()


def worktree_paths(git_in: Git, repo: Path) -> list[str]:
    out = git_in(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


async def test_validate_repo_names_the_field(user_repo: Path, tmp_path: Path) -> None:
    checked = await validate_repo(str(user_repo))
    assert checked.path == user_repo
    assert checked.base == "HEAD" and len(checked.base_commit) == 40
    # A symlink and a subdirectory lead to the same work tree.
    link = tmp_path / "link"
    link.symlink_to(user_repo)
    assert (await validate_repo(link / "src")).path == user_repo

    plain = tmp_path / "plain"
    plain.mkdir()
    bad_repos = ["relative/path", str(tmp_path / "missing"), str(plain), ""]
    for bad in bad_repos:
        with pytest.raises(RepoError) as err:
            await validate_repo(bad)
        assert err.value.field == "repo", bad
    for bad in ["no-such-branch", "--output=/tmp/x", "HEAD~99"]:
        with pytest.raises(RepoError) as err:
            await validate_repo(user_repo, bad)
        assert err.value.field == "base", bad
        assert str(err.value).startswith("base:")


async def test_root_inside_the_repository_is_refused(user_repo: Path) -> None:
    with pytest.raises(ValueError, match="inside the repository"):
        WorktreeManager(user_repo, user_repo / ".tierd" / "worktrees")


async def test_two_worktrees_from_one_base_are_independent(
    user_repo: Path, wt_root: Path, git_in: Git
) -> None:
    repo = await validate_repo(user_repo)
    wm = WorktreeManager(repo.path, wt_root)
    a = await wm.create("t1", "a", base=repo.base_commit)
    b = await wm.create("t1", "b", base=repo.base_commit)
    assert a.path == wt_root / "t1" / "a" and a.branch == "tierd/t1/a"
    # Committed content only: the user's uncommitted edit is not part of the base.
    assert (a.path / "README.md").read_text() == "# Demo\n"
    (a.path / "src" / "app.py").write_text("changed in a\n")
    (a.path / "new_in_a.txt").write_text("new\n")
    assert (b.path / "src" / "app.py").read_text().startswith("def greet")
    assert not (b.path / "new_in_a.txt").exists()

    done = await wm.commit(a, "Changed app.py.")
    assert done.committed and done.files == ("new_in_a.txt", "src/app.py")
    assert done.files_changed == 2 and done.insertions == 2 and done.deletions == 2
    log = git_in(a.path, "log", "-1", "--format=%an%n%B")
    assert "task t1, stream a" in log and "Tierd-Stream: a" in log and "Changed app.py." in log
    # Nothing new: no commit, the same stats.
    again = await wm.commit(a)
    assert not again.committed and again.head == done.head and again.files == done.files
    assert git_in(user_repo, "rev-parse", "tierd/t1/b").strip() == repo.base_commit
    assert sorted(branches(git_in, user_repo)) == ["tierd/t1/a", "tierd/t1/b"]


async def test_many_streams_made_at_once_all_get_their_worktree(
    user_repo: Path, wt_root: Path, git_in: Git
) -> None:
    """Streams start together, each with its own manager, as the engine runs them. `git
    worktree add` reads every other worktree's record, and fails on one half written."""
    repo = await validate_repo(user_repo)
    names = [f"s{i}" for i in range(16)]
    for _ in range(3):
        made = await asyncio.gather(
            *(WorktreeManager(repo.path, wt_root).create("t1", n, base=repo.base_commit)
              for n in names)
        )  # fmt: skip
        assert [w.branch for w in made] == [f"tierd/t1/{n}" for n in names]
        assert all((w.path / "README.md").is_file() for w in made)
        await asyncio.gather(*(WorktreeManager(repo.path, wt_root).remove_task("t1")
                               for _ in range(2)))  # fmt: skip
        assert branches(git_in, user_repo) == []


async def test_create_is_idempotent(user_repo: Path, wt_root: Path) -> None:
    repo = await validate_repo(user_repo)
    wm = WorktreeManager(repo.path, wt_root)
    first = await wm.create("t1", "a", base="HEAD")
    (first.path / "work.txt").write_text("in progress\n")
    again = await wm.create("t1", "a", base="HEAD")
    assert again == first and (again.path / "work.txt").exists()
    # A worktree directory lost in a crash comes back on the same branch.
    await wm.commit(first)
    await wm.remove_task("t1", keep_branches=["tierd/t1/a"])
    back = await wm.create("t1", "a", base="HEAD")
    assert (back.path / "work.txt").read_text() == "in progress\n"


async def test_dependencies_are_merged_in_order(
    user_repo: Path, wt_root: Path, git_in: Git
) -> None:
    wm = WorktreeManager(user_repo, wt_root)
    a = await wm.create("t1", "a", base="HEAD")
    b = await wm.create("t1", "b", base="HEAD")
    (a.path / "src" / "app.py").write_text("from a\n")
    (b.path / "docs" / "guide.md").write_text("from b\n")
    await wm.commit(a)
    await wm.commit(b)
    c = await wm.create("t1", "c", base="HEAD", depends_on=[a.branch, b.branch])
    assert (c.path / "src" / "app.py").read_text() == "from a\n"
    assert (c.path / "docs" / "guide.md").read_text() == "from b\n"
    parents = git_in(c.path, "log", "-1", "--format=%P").split()
    assert parents == [
        git_in(user_repo, "rev-parse", a.branch).strip(),
        git_in(user_repo, "rev-parse", b.branch).strip(),
    ]
    # The same dependencies give the same start (a resumed stream finds it again).
    assert await wm.start_commit("HEAD", [a.branch, b.branch]) == c.start_commit
    # A dependency already contained in another adds no merge.
    d = await wm.create("t1", "d", base="HEAD", depends_on=[c.branch, a.branch])
    assert d.start_commit == c.start_commit


async def test_conflicting_dependencies_name_the_files(user_repo: Path, wt_root: Path) -> None:
    wm = WorktreeManager(user_repo, wt_root)
    a = await wm.create("t1", "a", base="HEAD")
    b = await wm.create("t1", "b", base="HEAD")
    for wt in (a, b):
        (wt.path / "src" / "app.py").write_text(f"from {wt.stream_id}\n")
        (wt.path / "README.md").write_text(f"readme {wt.stream_id}\n")
        (wt.path / f"only-{wt.stream_id}.txt").write_text("fine\n")
        await wm.commit(wt)
    with pytest.raises(MergeConflict) as err:
        await wm.create("t1", "c", base="HEAD", depends_on=[a.branch, b.branch])
    assert err.value.files == ("README.md", "src/app.py")
    assert str(err.value) == (
        "merging tierd/t1/b into tierd/t1/a conflicts in: README.md, src/app.py"
    )
    assert not (wt_root / "t1" / "c").exists()


async def test_a_worktree_another_home_made_is_carried_on_in(
    user_repo: Path, tmp_path: Path, git_in: Git
) -> None:
    """A task taken over from a daemon that died on this machine (two homes, one store): the
    stream's branch is checked out in the first home's worktree, with its uncommitted work.
    The second home goes on in it; once that worktree is gone, it makes its own."""
    first = WorktreeManager(user_repo, tmp_path / "home-a" / "worktrees")
    second = WorktreeManager(user_repo, tmp_path / "home-b" / "worktrees")
    made = await first.create("t1", "a", base="HEAD")
    (made.path / "work.txt").write_text("in progress\n")
    taken = await second.create("t1", "a", base="HEAD")
    assert taken.path == made.path and taken.branch == made.branch
    assert (taken.path / "work.txt").read_text() == "in progress\n"
    assert worktree_paths(git_in, user_repo) == [str(user_repo), str(made.path)]
    # Committed there, then that home's worktree lost: the second makes its own on the branch.
    await second.commit(taken)
    shutil.rmtree(made.path)
    own = await second.create("t1", "a", base="HEAD")
    assert own.path == tmp_path / "home-b" / "worktrees" / "t1" / "a"
    assert (own.path / "work.txt").read_text() == "in progress\n"


async def test_the_task_end_removes_an_adopted_worktree_but_never_a_users(
    user_repo: Path, tmp_path: Path, git_in: Git
) -> None:
    first = WorktreeManager(user_repo, tmp_path / "home-a" / "worktrees")
    second = WorktreeManager(user_repo, tmp_path / "home-b" / "worktrees")
    made = await first.create("t1", "a", base="HEAD")
    await second.create("t1", "b", base="HEAD")
    # The user looks at another tierd branch in a worktree of their own: not tierd's to remove.
    git_in(user_repo, "branch", "tierd/t1/c", "HEAD")
    mine = tmp_path / "inspect"
    git_in(user_repo, "worktree", "add", "--quiet", str(mine), "tierd/t1/c")
    assert (await second.create("t1", "a", base="HEAD")).path == made.path
    done = await second.remove_task("t1")
    assert set(done.worktrees) == {made.path, tmp_path / "home-b" / "worktrees" / "t1" / "b"}
    assert not made.path.exists() and not made.path.parent.exists() and mine.is_dir()
    assert worktree_paths(git_in, user_repo) == [str(user_repo), str(mine)]
    assert branches(git_in, user_repo) == ["tierd/t1/c"]
    assert len(done.left) == 1 and "tierd/t1/c" in done.left[0]  # checked out by the user


async def test_a_reconcile_never_touches_another_homes_worktrees(
    user_repo: Path, tmp_path: Path, git_in: Git
) -> None:
    """Two homes (two stores, say) with code tasks on one repository: a start of the second
    reconciles its own root only; the first's live worktree and its work stay."""
    first = WorktreeManager(user_repo, tmp_path / "home-a" / "worktrees")
    second = WorktreeManager(user_repo, tmp_path / "home-b" / "worktrees")
    theirs = await first.create("t9", "s1", base="HEAD")
    (theirs.path / "work.txt").write_text("in progress\n")
    done = await second.reconcile([], keep_branches=["tierd/t9/s1"])
    assert not done.worktrees and (theirs.path / "work.txt").read_text() == "in progress\n"
    assert str(theirs.path) in worktree_paths(git_in, user_repo)


async def test_remove_task_keeps_named_branches(
    user_repo: Path, wt_root: Path, git_in: Git
) -> None:
    wm = WorktreeManager(user_repo, wt_root)
    for s in ("a", "b"):
        await wm.create("t1", s, base="HEAD")
    other = await wm.create("t2", "a", base="HEAD")
    done = await wm.remove_task("t1", keep_branches=["tierd/t1/b"])
    assert sorted(done.branches) == ["tierd/t1/a"]
    assert not (wt_root / "t1").exists() and other.path.is_dir()
    assert sorted(branches(git_in, user_repo)) == ["tierd/t1/b", "tierd/t2/a"]
    assert worktree_paths(git_in, user_repo) == [str(user_repo), str(other.path)]


async def test_reconcile_removes_what_no_task_needs(
    user_repo: Path, wt_root: Path, git_in: Git
) -> None:
    wm = WorktreeManager(user_repo, wt_root)
    await wm.create("ended", "a", base="HEAD")
    await wm.create("ended", "result", base="HEAD")
    alive = await wm.create("alive", "a", base="HEAD")
    crashed = await wm.create("crashed", "a", base="HEAD")
    # A crash left: a worktree directory deleted behind git's back, a stray directory, a branch
    # without a worktree.
    git_in(user_repo, "branch", "tierd/gone/x", "HEAD")
    (wt_root / "stray" / "s").mkdir(parents=True)
    (wt_root / "stray" / "s" / "file").write_text("left over\n")
    shutil.rmtree(crashed.path)
    done = await wm.reconcile(["alive"], keep_branches=["tierd/ended/result"])
    assert sorted(branches(git_in, user_repo)) == ["tierd/alive/a", "tierd/ended/result"]
    assert worktree_paths(git_in, user_repo) == [str(user_repo), str(alive.path)]
    assert sorted(os.listdir(wt_root)) == ["alive"]
    assert "tierd/gone/x" in done.branches and not done.left
    assert "prunable" not in git_in(user_repo, "worktree", "list", "--porcelain")
    # Idempotent: a second run finds nothing.
    again = await wm.reconcile(["alive"], keep_branches=["tierd/ended/result"])
    assert again.worktrees == () and again.branches == () and again.directories == ()


async def test_include_uncommitted_snapshots_without_touching_the_index(
    user_repo: Path, wt_root: Path, git_in: Git, state_of: Callable[[Path], dict[str, bytes]]
) -> None:
    before = state_of(user_repo)
    repo = await validate_repo(user_repo, include_uncommitted=True)
    assert repo.uncommitted
    assert (
        git_in(user_repo, "rev-parse", f"{repo.base_commit}^").strip()
        == git_in(user_repo, "rev-parse", "HEAD").strip()
    )
    wt = await WorktreeManager(repo.path, wt_root).create("t1", "a", base=repo.base_commit)
    assert (wt.path / "README.md").read_text() == "# Demo\nuser edit in progress\n"
    assert (wt.path / "src" / "util.py").read_text() == "VALUE = 2\n"
    assert (wt.path / "notes.txt").exists() and not (wt.path / ".env").exists()
    assert state_of(user_repo) == before
    side = git_in(user_repo, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "side").strip()
    with pytest.raises(RepoError, match="base must be HEAD") as err:
        await validate_repo(user_repo, side, include_uncommitted=True)
    assert err.value.field == "base"


def test_branch_names_refuse_unsafe_ids() -> None:
    assert branch_name("t-1", "s.a") == "tierd/t-1/s.a"
    for task, stream in [("..", "a"), ("t", "a/b"), ("-x", "a"), ("t", "a.lock"), ("", "a")]:
        with pytest.raises(ValueError):
            branch_name(task, stream)
