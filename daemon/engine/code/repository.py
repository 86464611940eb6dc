"""A code task's repository: check the submitted `repo` and `base`, snapshot uncommitted work.

`validate_repo` is what `task/submit` runs: the path must be absolute, exist, and (after
resolving symlinks) be inside a git work tree; the base must resolve to a commit. Each failure
is a `RepoError` naming the field, so the API can answer -32602 / 422 with it.

A running task never reads the user's uncommitted changes: its base is a commit. With
`include_uncommitted`, `snapshot_uncommitted` makes them a commit object on top of HEAD through a
private index file, so the user's index, working tree and branches stay exactly as they were.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from daemon.engine.code.git import git, identity_env

__all__ = ["Repo", "RepoError", "snapshot_uncommitted", "validate_repo"]


class RepoError(ValueError):
    """A submitted `repo` or `base` that cannot be used; `field` names which."""

    def __init__(self, field: Literal["repo", "base"], message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Repo:
    """A checked repository: where it is, and the commit a task starts from."""

    #: The work tree's top level, symlinks resolved.
    path: Path
    #: The git directory shared by all its worktrees (objects, refs, worktree records).
    common_dir: Path
    #: The base as the user gave it (a ref, "HEAD" by default).
    base: str
    #: The commit the task starts from (the snapshot's, with uncommitted changes included).
    base_commit: str
    #: True when `base_commit` is a snapshot of uncommitted changes on top of HEAD.
    uncommitted: bool = False


async def _work_tree(path: Path) -> tuple[Path, Path]:
    probe = await git(
        path,
        "rev-parse",
        "--path-format=absolute",
        "--is-inside-work-tree",
        "--show-toplevel",
        "--git-common-dir",
        check=False,
    )
    lines = probe.out.splitlines()
    if probe.exit_code != 0 or len(lines) != 3 or lines[0] != "true":
        why = probe.err.strip().splitlines()[:1]
        raise RepoError("repo", f"{path} is not a git work tree" + (f" ({why[0]})" if why else ""))
    top = await asyncio.to_thread(Path(lines[1]).resolve)
    return top, await asyncio.to_thread(Path(lines[2]).resolve)


async def _commit_of(path: Path, ref: str) -> str | None:
    found = await git(
        path,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        check=False,
    )
    return found.out.strip() if found.exit_code == 0 else None


async def validate_repo(
    repo: str | os.PathLike[str], base: str = "HEAD", *, include_uncommitted: bool = False
) -> Repo:
    """Check a submitted repository and base; raise `RepoError` naming the field at fault."""
    raw = os.fspath(repo)
    if not raw.strip():
        raise RepoError("repo", "is empty: give the absolute path of a git work tree")
    given = Path(raw)
    if not given.is_absolute():
        raise RepoError("repo", f"must be an absolute path (got {raw!r})")
    resolved = await asyncio.to_thread(given.resolve)
    if not resolved.is_absolute():
        raise RepoError("repo", f"{raw!r} is not absolute after resolving symlinks")
    if not await asyncio.to_thread(resolved.is_dir):
        raise RepoError("repo", f"{resolved} does not exist or is not a directory")
    top, common = await _work_tree(resolved)
    if not base.strip() or base.startswith("-"):
        raise RepoError("base", f"{base!r} is not a git ref")
    commit = await _commit_of(top, base)
    if commit is None:
        raise RepoError("base", f"{base!r} does not resolve to a commit in {top}")
    checked = Repo(path=top, common_dir=common, base=base, base_commit=commit)
    if not include_uncommitted:
        return checked
    if commit != await _commit_of(top, "HEAD"):
        raise RepoError(
            "base", "include_uncommitted takes the changes on top of HEAD: base must be HEAD"
        )
    return await snapshot_uncommitted(checked)


async def _private_index(repo: Path, into: Path) -> None:
    found = await git(repo, "rev-parse", "--path-format=absolute", "--git-path", "index")
    index = Path(found.out.strip())
    # A copy keeps the stat data, so `git add -A` only hashes what changed.
    if await asyncio.to_thread(index.is_file):
        await asyncio.to_thread(shutil.copyfile, index, into)
    else:
        await git(repo, "read-tree", "HEAD", env={"GIT_INDEX_FILE": str(into)})


async def snapshot_uncommitted(repo: Repo) -> Repo:
    """The same repo, its base a commit of HEAD plus every uncommitted change (staged or not,
    untracked files not ignored). Nothing of the user's changes: only objects are written."""
    head = await _commit_of(repo.path, "HEAD")
    if head is None:
        raise RepoError("base", "the repository has no commit to put uncommitted changes on")
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tierd-index-"))
    try:
        index = tmp / "index"
        await _private_index(repo.path, index)
        env = {"GIT_INDEX_FILE": str(index)}
        await git(repo.path, "add", "--all", "--", ".", env=env)
        tree = (await git(repo.path, "write-tree", env=env)).out.strip()
        head_tree = (await git(repo.path, "rev-parse", f"{head}^{{tree}}")).out.strip()
        if tree == head_tree:
            return replace(repo, base_commit=head)
        message = f"tierd: uncommitted changes of {repo.path}\n"
        made = await git(
            repo.path,
            "commit-tree",
            tree,
            "-p",
            head,
            env=identity_env("tierd"),
            stdin=message.encode(),
        )
        return replace(repo, base_commit=made.out.strip(), uncommitted=True)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
