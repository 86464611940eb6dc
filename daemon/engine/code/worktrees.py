"""The worktrees and branches of one repository's code tasks: make, commit, merge, clean up.

A stream works in `ROOT/<task>/<stream>` (ROOT is `$TIERD_HOME/worktrees`, never inside the
user's repository) on branch `tierd/<task>/<stream>`, which starts from the task's base commit
or, with dependencies, from their branches merged in order (git 2.39 has no `--merge-base`:
`git merge-tree --write-tree A B`, then `git commit-tree TREE -p A -p B`; a conflict raises
`MergeConflict` listing the files). The user's working tree and index are never touched: every
command is `git -C repo` plumbing or runs inside a tierd worktree.

Everything is idempotent, so a daemon killed at any point can run the same call again: `create`
returns the worktree already there, merge commits have fixed dates (the same parents give the
same commit), and `remove_task` / `reconcile` remove whatever is left of what tierd made.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.engine.code.git import GitError, git, identity_env, worktree_env
from daemon.engine.code.repository import Repo, RepoError, snapshot_uncommitted, validate_repo

__all__ = [
    "BRANCH_PREFIX",
    "SNAPSHOTS",
    "Cleanup",
    "CommitResult",
    "MergeConflict",
    "Repo",
    "RepoError",
    "Worktree",
    "WorktreeError",
    "WorktreeManager",
    "branch_name",
    "excluding",
    "snapshot_uncommitted",
    "validate_repo",
]

BRANCH_PREFIX = "tierd/"
_HEADS = "refs/heads/"
#: Where a cluster's streams keep their saved worktree states (`ray.sites.snapshot_ref`); not
#: under refs/tierd/, where `tierd/<task>/<stream>` would name it before the stream's branch.
SNAPSHOTS = "refs/tierd-snapshots/"
#: Task and stream ids become path and ref components: keep them to plain names.
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class WorktreeError(RuntimeError):
    """A worktree or branch could not be made (a dependency that does not resolve, say)."""


class MergeConflict(WorktreeError):
    """Dependency branches that do not merge cleanly; `files` lists the conflicted paths."""

    def __init__(self, left: str, right: str, files: Sequence[str]) -> None:
        self.files = tuple(files)
        super().__init__(
            f"merging {right} into {left} conflicts in: {', '.join(self.files) or '(unknown)'}"
        )


@dataclass(frozen=True)
class Worktree:
    """A stream's worktree: where it is, its branch, and the commit it started from."""

    task_id: str
    stream_id: str
    path: Path
    branch: str
    start_commit: str
    #: Its git directory (`<common dir>/worktrees/<name>`), as the repository records it:
    #: daemon-side git commands use this, never the worktree's own `.git` file.
    git_dir: Path

    def git_env(self) -> dict[str, str]:
        """Variables for running git in this worktree safely (see `git.worktree_env`)."""
        return worktree_env(self.git_dir, self.path)


@dataclass(frozen=True)
class CommitResult:
    """A stream's change so far: its branch head and what differs from its start."""

    head: str
    #: True when this call made a commit (False: nothing new to commit).
    committed: bool
    files: tuple[str, ...]
    insertions: int
    deletions: int

    @property
    def files_changed(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Cleanup:
    """What `remove_task` or `reconcile` removed."""

    worktrees: tuple[Path, ...] = ()
    #: Task directories under the root that no kept task owns (left by a crash, say).
    directories: tuple[Path, ...] = ()
    branches: tuple[str, ...] = ()
    #: Branches left because git refused (checked out by the user, say), with git's reason.
    left: tuple[str, ...] = ()


#: One lock per repository and event loop for changes to its worktree records. `git worktree
#: add` reads every other worktree's record, so two adds at once can fail on a record the
#: other has only half written ("failed to read .git/worktrees/<name>/commondir").
_RECORD_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _records_lock(repo: Path) -> asyncio.Lock:
    locks = _RECORD_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(repo, asyncio.Lock())


def _check_id(kind: str, value: str) -> str:
    if not _ID.fullmatch(value) or value.endswith(".lock") or ".." in value:
        raise ValueError(f"{kind} id {value!r} cannot name a branch or directory")
    return value


def excluding(paths: Sequence[str]) -> list[str]:
    """Pathspecs that leave `paths` (taken literally) out of a `git add`."""
    return [f":(exclude,literal){p}" for p in paths]


def branch_name(task_id: str, stream_id: str) -> str:
    """The branch of a stream: `tierd/<task id>/<stream id>`."""
    return f"{BRANCH_PREFIX}{_check_id('task', task_id)}/{_check_id('stream', stream_id)}"


def _task_of_branch(branch: str) -> str | None:
    parts = branch.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] + "/" == BRANCH_PREFIX else None


async def _numstat(cwd: Path, a: str, b: str) -> tuple[tuple[str, ...], int, int]:
    out = (await git(cwd, "diff", "--numstat", "-z", "--no-renames", a, b, "--")).out
    files, ins, dels = [], 0, 0
    for entry in out.split("\0"):
        if not entry:
            continue
        added, deleted, path = entry.split("\t", 2)
        files.append(path)
        # Binary files count "-": files changed, no lines.
        ins += int(added) if added.isdigit() else 0
        dels += int(deleted) if deleted.isdigit() else 0
    return tuple(files), ins, dels


async def _delete_snapshots(
    repo: Path, doomed_task: Callable[[str | None], bool], keep_branches: Collection[str]
) -> None:
    """Remove the saved worktree states (`refs/tierd-snapshots/<task>/<stream>`, a cluster's
    streams') of the tasks `doomed_task` picks, but those whose stream's branch is kept
    (another home's task, say: its snapshots are its own)."""
    out = await git(repo, "for-each-ref", "--format=%(refname)", SNAPSHOTS)
    for ref in out.out.splitlines():
        parts = ref.removeprefix(SNAPSHOTS).split("/")
        if len(parts) != 2 or not doomed_task(parts[0]):
            continue
        if branch_name(parts[0], parts[1]) not in keep_branches:
            await git(repo, "update-ref", "-d", ref, check=False)


class WorktreeManager:
    """The tierd worktrees and branches of one repository, under one root directory."""

    def __init__(self, repo: Path, root: Path) -> None:
        self.repo = repo.resolve()
        self.root = root.resolve()
        if self.root == self.repo or self.root.is_relative_to(self.repo):
            raise ValueError(f"worktrees root {self.root} is inside the repository {self.repo}")

    def path_for(self, task_id: str, stream_id: str) -> Path:
        return self.root / _check_id("task", task_id) / _check_id("stream", stream_id)

    async def _git(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
    ) -> str:
        return (await git(self.repo, *args, env=env, stdin=stdin)).out

    async def resolve(self, ref: str) -> str:
        """The commit `ref` names, or `WorktreeError`."""
        found = await git(
            self.repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}",
            check=False,
        )  # fmt: skip
        if found.exit_code != 0 or ref.startswith("-"):
            raise WorktreeError(f"{ref!r} does not resolve to a commit in {self.repo}")
        return found.out.strip()

    async def _is_ancestor(self, a: str, b: str) -> bool:
        found = await git(self.repo, "merge-base", "--is-ancestor", a, b, check=False)
        return found.exit_code == 0

    async def _merge_two(self, left: str, right: str, names: tuple[str, str]) -> str:
        if await self._is_ancestor(right, left):
            return left
        if await self._is_ancestor(left, right):
            return right
        merged = await git(
            self.repo, "merge-tree", "--write-tree", "--name-only", "-z", left, right, check=False
        )
        parts = merged.out.split("\0")
        if merged.exit_code == 1:
            files = parts[1 : parts.index("")] if "" in parts else parts[1:]
            raise MergeConflict(*names, list(dict.fromkeys(files)))
        if merged.exit_code != 0:
            raise GitError(("merge-tree", left, right), merged.exit_code, merged.err)
        # Fixed dates (the newer parent's): the same parents always give the same commit, so
        # a resumed stream finds its start again.
        when = (await self._git("show", "-s", "--format=%ct", left, right)).split()
        date = f"@{max(int(w) for w in when)} +0000"
        env = {**identity_env("tierd"), "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        message = f"tierd: merge {right[:12]} into {left[:12]}\n".encode()
        return (
            await self._git(
                "commit-tree", parts[0], "-p", left, "-p", right, env=env, stdin=message
            )
        ).strip()

    async def merge(self, refs: Sequence[str]) -> str:
        """One commit holding all of `refs` merged in order (`MergeConflict` if they conflict)."""
        named: dict[str, str] = {}
        for ref in refs:
            named.setdefault(await self.resolve(ref), ref)
        commits = list(named)
        if not commits:
            raise ValueError("nothing to merge")
        head, label = commits[0], named[commits[0]]
        for other in commits[1:]:
            head = await self._merge_two(head, other, (label, named[other]))
            label = f"{label} + {named[other]}"
        return head

    async def start_commit(self, base: str, depends_on: Sequence[str] = ()) -> str:
        """Where a stream starts: its dependencies merged, or the base without any."""
        return await self.merge(depends_on) if depends_on else await self.resolve(base)

    async def registered(self) -> dict[Path, str | None]:
        """Worktrees git knows for this repository: path -> branch (None when detached)."""
        out = await self._git("worktree", "list", "--porcelain", "-z")
        found: dict[Path, str | None] = {}
        path: Path | None = None
        for line in out.split("\0"):
            if line.startswith("worktree "):
                path = Path(line[len("worktree ") :])
                found[path] = None
            elif line.startswith("branch ") and path is not None:
                found[path] = line[len("branch ") :].removeprefix(_HEADS)
        return found

    async def _admin_dir(self, path: Path) -> Path:
        """The git directory the repository keeps for the worktree at `path`."""
        found = await self._git("rev-parse", "--path-format=absolute", "--git-common-dir")
        records = Path(found.strip()) / "worktrees"
        want = str(path / ".git")

        def find() -> Path:
            for entry in sorted(records.iterdir()) if records.is_dir() else []:
                try:
                    if (entry / "gitdir").read_text().strip() == want:
                        return entry
                except OSError:
                    continue
            raise WorktreeError(f"the repository has no record of the worktree {path}")

        return await asyncio.to_thread(find)

    async def _branch_exists(self, branch: str) -> bool:
        found = await git(
            self.repo, "show-ref", "--verify", "--quiet", _HEADS + branch, check=False
        )
        return found.exit_code == 0

    async def ensure_branch(self, branch: str, start: str) -> None:
        """`branch` at `start` unless it exists (a stream whose worktree is not here: the
        branch is what the user's repository keeps of it)."""
        if not await self._branch_exists(branch):
            await self._git("branch", "--no-track", branch, start)

    async def create(
        self, task_id: str, stream_id: str, *, base: str, depends_on: Sequence[str] = ()
    ) -> Worktree:
        """The stream's worktree on its branch; made if missing, the existing one if not
        (also one another tierd home on this machine made: a taken-over task's).

        `base` should be a commit (the task's `Repo.base_commit`, fixed at submit), so that a
        stream started later, or again after a restart, starts where the others did.
        """
        branch = branch_name(task_id, stream_id)
        path = self.path_for(task_id, stream_id)
        start = await self.start_commit(base, depends_on)
        async with _records_lock(self.repo):
            current = await self.registered()
            elsewhere = next((p for p, b in current.items() if b == branch and p != path), None)
            if (
                elsewhere is not None
                and self._task_of(elsewhere, branch, adopted=True) == task_id
                and await asyncio.to_thread(elsewhere.is_dir)
            ):
                # Another daemon sharing the store made it (a task taken over from a daemon
                # that died on this machine): its uncommitted work is there, carry on in it.
                path = elsewhere
            elif not (current.get(path) == branch and await asyncio.to_thread(path.is_dir)):
                if path in current or await asyncio.to_thread(path.exists):
                    await self._remove_worktree(path)
                await self.prune()
                if await self._branch_exists(branch):
                    await self._git("worktree", "add", "--quiet", str(path), branch)
                else:
                    await self._git("worktree", "add", "--quiet", "-b", branch, str(path), start)
        admin = await self._admin_dir(path)
        return Worktree(task_id, stream_id, path, branch, start, admin)

    async def commit(
        self, wt: Worktree, summary: str = "", *, exclude: Sequence[str] = (), by: str = ""
    ) -> CommitResult:
        """Commit everything changed in the worktree (but `exclude`: linked dirs, say) on its
        branch; return the stream's whole change since its start. `by` names who made the
        change when it is not the stream's executor ("orchestrator": a review's fix)."""
        env = wt.git_env()
        await git(wt.path, "add", "--all", "--", ".", *excluding(exclude), env=env)
        staged = await git(wt.path, "diff", "--cached", "--quiet", env=env, check=False)
        committed = staged.exit_code == 1
        if committed:
            fixed = f" (fixed by the {by})" if by else ""
            message = (
                f"tierd: task {wt.task_id}, stream {wt.stream_id}{fixed}\n\n"
                + (summary.strip() + "\n\n" if summary.strip() else "")
                + f"Tierd-Task: {wt.task_id}\nTierd-Stream: {wt.stream_id}\n"
                + (f"Tierd-Fixed-By: {by}\n" if by else "")
            )
            who = f"{by}, " if by else ""
            author = identity_env(f"tierd ({who}task {wt.task_id}, stream {wt.stream_id})")
            await git(wt.path, "commit", "--quiet", "--no-verify", "-F", "-",
                      env={**env, **author}, stdin=message.encode())  # fmt: skip
        head = (await git(wt.path, "rev-parse", "HEAD", env=env)).out.strip()
        files, ins, dels = await _numstat(self.repo, wt.start_commit, head)
        return CommitResult(head, committed, files, ins, dels)

    async def diff_stat(self, a: str, b: str) -> tuple[tuple[str, ...], int, int]:
        """Files, insertions and deletions between two commits."""
        return await _numstat(self.repo, a, b)

    async def prune(self) -> None:
        """Forget worktrees whose directories are gone (`git worktree prune`)."""
        await self._git("worktree", "prune")

    def _ours(self, path: Path) -> bool:
        return path != self.root and path.is_relative_to(self.root)

    def _task_of(self, path: Path, branch: str | None, *, adopted: bool) -> str | None:
        """The task of a worktree tierd made: under this root, or with `adopted` under another
        tierd home's root on this machine (`.../worktrees/<task>/<stream>` on
        `tierd/<task>/<stream>`: one `create` adopted from a daemon that died); None for any
        other (a user's own worktree on a tierd branch, say)."""
        if self._ours(path):
            return path.relative_to(self.root).parts[0]
        if not adopted:
            return None
        task = _task_of_branch(branch or "")
        parts = path.parts
        laid_out = len(parts) >= 3 and parts[-3] == "worktrees" and parts[-2] == task
        return task if laid_out and branch == f"{BRANCH_PREFIX}{task}/{parts[-1]}" else None

    async def _remove_worktree(self, path: Path, *, adopted: bool = False) -> None:
        if not (adopted or self._ours(path)):
            raise WorktreeError(f"{path} is not under {self.root}: tierd did not make it")
        removed = await git(self.repo, "worktree", "remove", "--force", str(path), check=False)
        if removed.exit_code != 0 and await asyncio.to_thread(path.exists):
            # Not registered (or half made): it is ours by its place, remove the directory.
            await asyncio.to_thread(shutil.rmtree, path, True)
        if adopted:  # the task's folder in the other home's root, once empty
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.parent.rmdir)

    async def _delete_branches(self, branches: Sequence[str]) -> tuple[list[str], list[str]]:
        deleted, left = [], []
        for b in branches:
            gone = await git(self.repo, "branch", "--quiet", "-D", b, check=False)
            if gone.exit_code == 0:
                deleted.append(b)
            else:
                left.append(f"{b}: {gone.err.strip()}")
        return deleted, left

    async def tierd_branches(self) -> list[str]:
        """All `tierd/...` branches of the repository."""
        out = await self._git("for-each-ref", "--format=%(refname)", _HEADS + BRANCH_PREFIX)
        return [r.removeprefix(_HEADS) for r in out.splitlines() if r]

    async def _sweep(
        self,
        doomed_task: Callable[[str | None], bool],
        keep_branches: Collection[str],
        *,
        adopted: bool = False,
    ) -> Cleanup:
        """Remove tierd's worktrees (`_task_of`; with `adopted`, also those of other homes
        that this daemon's tasks adopted) and tierd branches of the tasks `doomed_task`
        picks."""
        wts: list[Path] = []
        async with _records_lock(self.repo):
            for path, branch in (await self.registered()).items():
                task = self._task_of(path, branch, adopted=adopted)
                if task is not None and doomed_task(task):
                    await self._remove_worktree(path, adopted=not self._ours(path))
                    wts.append(path)
            await self.prune()
        doomed = [
            b
            for b in await self.tierd_branches()
            if b not in keep_branches and doomed_task(_task_of_branch(b))
        ]
        deleted, left = await self._delete_branches(doomed)
        await _delete_snapshots(self.repo, doomed_task, keep_branches)
        return Cleanup(worktrees=tuple(wts), branches=tuple(deleted), left=tuple(left))

    async def remove_task(self, task_id: str, keep_branches: Collection[str] = ()) -> Cleanup:
        """Remove the task's worktrees and branches, except `keep_branches` (results to keep)."""
        _check_id("task", task_id)
        # Adopted worktrees too: the task is this daemon's (a reconcile never touches another
        # home's: its tasks may be another store's, alive, with uncommitted work).
        done = await self._sweep(lambda t: t == task_id, keep_branches, adopted=True)
        task_dir = self.root / task_id
        if await asyncio.to_thread(task_dir.is_dir):
            await asyncio.to_thread(shutil.rmtree, task_dir, True)
        return done

    async def reconcile(
        self, keep_tasks: Collection[str], keep_branches: Collection[str] = ()
    ) -> Cleanup:
        """Remove all tierd made that no task in `keep_tasks` needs: worktrees under the root,
        directories left there, `tierd/*` branches (but `keep_branches`); prune worktrees.

        `keep_tasks` must hold every task still needing worktrees, whatever its repository:
        directories under the root that no listed task owns are removed.
        """
        keep = set(keep_tasks)
        done = await self._sweep(lambda t: t not in keep, keep_branches)
        strays = await asyncio.to_thread(self._strays, keep)
        for stray in strays:
            await asyncio.to_thread(shutil.rmtree, stray, True)
        return Cleanup(done.worktrees, tuple(strays), done.branches, done.left)

    def _strays(self, keep: set[str]) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [
            p
            for p in sorted(self.root.iterdir())
            if p.name not in keep and p.is_dir() and not p.is_symlink()
        ]
