"""Paths a model gives, confined to a worktree; and path globs with gitignore's meaning.

`confine` turns a model-given path into a real file path inside the worktree, or refuses it with
a message the model can act on: absolute paths, `..` that climbs out, symbolic links that lead
out, and the worktree's `.git` entry (rewriting it would point tierd's own git commands at another
repository). `PathGlobs` matches worktree-relative paths the way `.gitignore` does, so a stream's
ownership (`src/sidebar/`, `*.md`, `tests/test_sidebar.py`) and the secret globs (`.env`,
`*.pem`) read as a developer expects:
- a pattern without a slash (other than a trailing one) matches a name at any depth;
- a pattern with a slash is anchored at the worktree root (a leading slash is allowed);
- a trailing slash matches a directory, and so everything below it;
- a pattern that matches a directory matches everything below it;
- `*` and `?` stay within one path segment, `**` spans segments, `[...]` is a character class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from roles.plan.globs import compile_glob

__all__ = ["Confined", "PathGlobs", "PathRefused", "confine"]


class PathRefused(ValueError):
    """A path the tools will not touch; the message is written for the model."""


@dataclass(frozen=True)
class Confined:
    """A path inside the worktree: `rel` as the model wrote it (normalized), `real` as it is
    on disk after symbolic links, and `real_rel`, the real path relative to the worktree."""

    rel: str
    real: Path
    real_rel: str

    def names(self) -> tuple[str, ...]:
        """Both relative spellings: a rule (ownership, secrets) must hold for each."""
        return (self.rel,) if self.rel == self.real_rel else (self.rel, self.real_rel)


def _normalize(given: str) -> list[str]:
    if not given.strip():
        raise PathRefused("the path is empty: give a path relative to the worktree root")
    if "\0" in given:
        raise PathRefused("the path contains a NUL character")
    pure = PurePosixPath(given)
    if pure.is_absolute() or given.startswith("~"):
        raise PathRefused(
            f"{given!r} is absolute: give a path relative to the worktree root (e.g. 'src/app.py')"
        )
    parts: list[str] = []
    for part in pure.parts:
        if part == "..":
            if not parts:
                raise PathRefused(f"{given!r} leaves the worktree: paths must stay inside it")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return parts


def confine(root: Path, given: str) -> Confined:
    """`given` (relative to the worktree `root`) as a path inside it, or `PathRefused`."""
    parts = _normalize(given)
    if ".git" in parts:
        raise PathRefused(f"{given!r} is inside .git, which belongs to git: tierd commits for you")
    base = root.resolve()
    real = base.joinpath(*parts).resolve()
    if real != base and not real.is_relative_to(base):
        raise PathRefused(f"{given!r} leads outside the worktree through a symbolic link")
    real_rel = real.relative_to(base).as_posix()
    if ".git" in PurePosixPath(real_rel).parts:
        raise PathRefused(f"{given!r} leads into .git, which belongs to git")
    return Confined(rel="/".join(parts) or ".", real=real, real_rel=real_rel)


@dataclass(frozen=True)
class _Glob:
    regex: re.Pattern[str]
    dir_only: bool


def _compile(pattern: str) -> _Glob | None:
    if not pattern.strip().rstrip("/"):
        return None  # a blank glob owns nothing (never "everything")
    compiled = compile_glob(pattern)
    return None if compiled is None else _Glob(*compiled)


class PathGlobs:
    """A set of gitignore-like globs over worktree-relative POSIX paths (see the module doc)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p for p in patterns if p.strip())
        self._globs = tuple(g for g in map(_compile, self.patterns) if g is not None)

    def __bool__(self) -> bool:
        return bool(self._globs)

    def __repr__(self) -> str:
        return f"PathGlobs({list(self.patterns)!r})"

    def matches(self, rel: str) -> bool:
        """True when `rel` (a file) or one of the directories above it matches a glob."""
        parts = PurePosixPath(rel).parts
        if not parts or parts == (".",):
            return False
        dirs = ["/".join(parts[:n]) for n in range(1, len(parts))]
        for glob in self._globs:
            candidates = dirs if glob.dir_only else [*dirs, "/".join(parts)]
            if any(glob.regex.fullmatch(c) for c in candidates):
                return True
        return False

    def matches_any(self, names: Iterable[str]) -> bool:
        return any(self.matches(n) for n in names)
