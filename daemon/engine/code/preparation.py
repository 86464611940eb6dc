"""Make a fresh worktree runnable: ignored files it needs, shared dependency dirs, secrets.

`git worktree add` carries tracked files only, so a worktree of a real project has no `.venv`,
no `node_modules`, no `.env`. tierd follows the conventions developers already use:
- `.worktreeinclude` at the repository root (gitignore syntax, as in Claude Code): the files it
  matches that git ignores are copied into each worktree; a tracked file is never copied, and
  nothing already in the worktree is overwritten;
- `link_dirs` (e.g. `.venv`, `node_modules`): a symbolic link in the worktree to the user's
  directory, bound read-only in the sandbox, so streams share it and none can break it;
- `secret_globs` (default `.env`, `.env.*`, `*.pem`, `*.key`, `id_*`): the files the model's
  read and search tools withhold, while commands (the tests) still use them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from daemon.engine.code.git import git
from daemon.engine.code.paths import PathGlobs
from daemon.engine.code.sandbox import SandboxPolicy

__all__ = [
    "DEFAULT_SECRET_GLOBS",
    "INCLUDE_FILE",
    "LinkedDir",
    "Preparation",
    "included_files",
    "prepare_worktree",
    "secret_globs",
]

DEFAULT_SECRET_GLOBS = (".env", ".env.*", "*.pem", "*.key", "id_*")
INCLUDE_FILE = ".worktreeinclude"
#: Past this many files `.worktreeinclude` is probably matching a dependency directory
#: (which belongs in `link_dirs`): the rest are skipped and reported.
MAX_INCLUDED_FILES = 5000


def secret_globs(globs: Iterable[str] = DEFAULT_SECRET_GLOBS) -> PathGlobs:
    """The matcher of files the model's tools withhold (gitignore-like globs)."""
    return PathGlobs(globs)


@dataclass(frozen=True)
class LinkedDir:
    """A shared dependency directory: `name` in the worktree links to `target`."""

    name: str
    target: Path


@dataclass(frozen=True)
class Preparation:
    """What was done to a worktree, and what its sandbox needs."""

    copied: tuple[str, ...] = ()
    linked: tuple[LinkedDir, ...] = ()
    #: Why an include or a link was not made (one line each), for the stream's record.
    skipped: tuple[str, ...] = ()
    #: The repository's git directory: bound read-only so `git diff` works in commands.
    git_dir: Path | None = None

    def commit_excludes(self) -> tuple[str, ...]:
        """Worktree paths that are tierd's, not the stream's: never commit them."""
        return tuple(link.name for link in self.linked)

    def sandbox(self, worktree: Path, policy: SandboxPolicy) -> SandboxPolicy:
        """`policy` with this worktree's read-only binds and dependency `bin` dirs on PATH."""
        ro = [link.target for link in self.linked]
        if self.git_dir is not None:
            ro.append(self.git_dir)
        bins = [
            worktree / link.name / sub
            for link in self.linked
            for sub in ("bin", ".bin")
            if (link.target / sub).is_dir()
        ]
        return replace(
            policy,
            read_only=(*policy.read_only, *ro),
            path_dirs=(*bins, *policy.path_dirs),
        )


def _relative_name(name: str) -> str | None:
    pure = PurePosixPath(name.strip().strip("/"))
    if not pure.parts or pure.is_absolute() or ".." in pure.parts or ".git" in pure.parts:
        return None
    return pure.as_posix()


async def included_files(repo: Path) -> list[str]:
    """Files of `repo` matched by its `.worktreeinclude` that git ignores (relative paths)."""
    include = repo / INCLUDE_FILE
    if not await asyncio.to_thread(include.is_file):
        return []
    # Untracked files matching .worktreeinclude...
    listed = await git(repo, "ls-files", "-z", "--others", "--ignored", f"--exclude-from={include}")
    candidates = [p for p in listed.out.split("\0") if p]
    if not candidates:
        return []
    # ...of which only those the repository's own rules ignore.
    ignored = await git(
        repo, "check-ignore", "-z", "--stdin", stdin="\0".join(candidates).encode(), check=False
    )
    return sorted(p for p in ignored.out.split("\0") if p)


def _copy(repo: Path, worktree: Path, files: Sequence[str]) -> tuple[list[str], list[str]]:
    copied, skipped = [], []
    for rel in files:
        src, dst = repo / rel, worktree / rel
        if os.path.lexists(dst):
            skipped.append(f"{rel}: already in the worktree (never overwritten)")
            continue
        if not dst.parent.resolve().is_relative_to(worktree.resolve()):
            skipped.append(f"{rel}: its directory leads outside the worktree")
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
        copied.append(rel)
    return copied, skipped


def _link(repo: Path, worktree: Path, names: Sequence[str]) -> tuple[list[LinkedDir], list[str]]:
    linked, skipped = [], []
    for raw in names:
        name = _relative_name(raw)
        if name is None:
            skipped.append(f"{raw}: link_dirs takes paths inside the repository")
            continue
        target = (repo / name).resolve()
        if not target.is_dir():
            skipped.append(f"{name}: not a directory in the repository")
            continue
        dst = worktree / name
        if os.path.lexists(dst):
            skipped.append(f"{name}: already in the worktree (tracked?), not linked")
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(target, target_is_directory=True)
        linked.append(LinkedDir(name, target))
    return linked, skipped


async def prepare_worktree(
    repo: Path, worktree: Path, *, link_dirs: Sequence[str] = ()
) -> Preparation:
    """Copy `.worktreeinclude` files and link `link_dirs` from `repo` into `worktree`.

    Link dirs win over includes (a `.venv` matched by both is linked, not copied).
    """
    names = [n for n in (_relative_name(d) for d in link_dirs) if n]
    files = [
        f
        for f in await included_files(repo)
        if not any(f == n or f.startswith(n + "/") for n in names)
    ]
    skipped: list[str] = []
    if len(files) > MAX_INCLUDED_FILES:
        skipped.append(
            f"{len(files) - MAX_INCLUDED_FILES} files of {INCLUDE_FILE} not copied (over "
            f"{MAX_INCLUDED_FILES}; share dependency directories with link_dirs)"
        )
        files = files[:MAX_INCLUDED_FILES]
    linked, link_skips = await asyncio.to_thread(_link, repo, worktree, link_dirs)
    copied, copy_skips = await asyncio.to_thread(_copy, repo, worktree, files)
    found = await git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return Preparation(
        copied=tuple(copied),
        linked=tuple(linked),
        skipped=(*skipped, *link_skips, *copy_skips),
        git_dir=await asyncio.to_thread(Path(found.out.strip()).resolve),
    )
