"""Ownership: the areas a stream alone may change, and when two streams' areas overlap.

`normalize_area` and `areas_overlap` compare areas as paths or names (any task). In a code
task a stream's ownership entries are path globs relative to the repository root, with
`.gitignore`'s meaning (the same meaning as the write tools that enforce them,
`daemon.engine.code.paths.PathGlobs`; roles cannot import the daemon, so the small matcher is
repeated here):
- a pattern without a slash (other than a trailing one) matches a name at any depth;
- a pattern with a slash is anchored at the repository root;
- a trailing slash matches a directory, and so everything below it;
- a pattern that matches a directory matches everything below it;
- `*` and `?` stay within one path segment, `**` spans segments, `[...]` is a character class.

The plan validator calls `code_ownership_problems` for code tasks: every stream owns at least
one glob, every glob stays inside the repository, and streams that may run at the same time
own disjoint paths. Overlap is reported only when a path shows it (see `globs_overlap`), so a
plan is not refused over a guess; streams in a dependency chain may own the same paths, since
a dependent stream starts from its dependencies' result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from roles.plan.globs import compile_glob

__all__ = [
    "areas_overlap",
    "code_ownership_problems",
    "glob_matches",
    "glob_problem",
    "globs_overlap",
    "join_words",
    "normalize_area",
]


def join_words(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


# --- areas as paths -------------------------------------------------------------------------


def normalize_area(area: str) -> str:
    """The comparable form of an ownership area: lower case, '/' separators, no './' prefix.

    Trailing slashes are dropped so that `auth/` and `auth` compare equal. An area that is only
    "." or "./" normalizes to "" and stands for the whole workspace (it overlaps everything).
    """
    text = area.strip().replace("\\", "/").lower()
    text = re.sub(r"/{2,}", "/", text)
    while text.startswith("./"):
        text = text[2:]
    if text == ".":
        text = ""
    return text.rstrip("/")


def areas_overlap(first: str, second: str) -> bool:
    """Whether two ownership areas overlap: equal, or one is a path prefix of the other.

    The prefix must end at a '/' boundary: `auth/` overlaps `auth/login.py` and `auth` overlaps
    `auth/x`, but `auth` does not overlap `authz`. Blank areas overlap nothing (they are
    ignored); the workspace root ("." or "./") overlaps every other area.
    """
    if not first.strip() or not second.strip():
        return False
    a, b = normalize_area(first), normalize_area(second)
    if a == b or a == "" or b == "":
        return True
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return longer.startswith(shorter + "/")


# --- globs as gitignore reads them ----------------------------------------------------------

_WILDCARDS = re.compile(r"\*\*|[*?]|\[[^\]/]*\]")


def glob_matches(pattern: str, path: str) -> bool:
    """Whether the glob matches the file `path` or a directory above it."""
    compiled = compile_glob(pattern)
    parts = PurePosixPath(path).parts
    if compiled is None or not parts:
        return False
    regex, dir_only = compiled
    dirs = ["/".join(parts[:n]) for n in range(1, len(parts))]
    candidates = dirs if dir_only else [*dirs, "/".join(parts)]
    return any(regex.fullmatch(c) for c in candidates)


def _sample(pattern: str) -> str:
    """A path the glob should match: each wildcard replaced by a plain name."""
    text = pattern.strip().lstrip("/").rstrip("/")
    while text.startswith("./"):
        text = text[2:]
    text = _WILDCARDS.sub(lambda m: m.group(0)[1:2] if m.group(0)[:1] == "[" else "x", text)
    return text or "x"


def globs_overlap(first: str, second: str) -> bool:
    """Whether some path is surely matched by both globs.

        True when the areas nest as paths (`src/` and `src/a.py`, equal spellings), or when a
        sample path of one glob (its wildcards filled in) is matched by both; so `src/**` and
        `src/sidebar/**` overlap, `src/*.py` and `src/*.ts` do not. Overlaps that no such sample
        shows (`*.py` and `src/**`) are not reported: the check does not refuse a plan on a guess
    (areas compare case-blind, as on a case-insensitive file system).
    """
    if not first.strip() or not second.strip():
        return False
    if areas_overlap(first, second):
        return True
    for one, other in ((first, second), (second, first)):
        sample = _sample(one)
        for path in (sample, sample + "/x"):
            if glob_matches(one, path) and glob_matches(other, path):
                return True
    return False


# --- the code-task checks -------------------------------------------------------------------


def glob_problem(stream_id: str, glob: str) -> str | None:
    """Why an ownership glob cannot be used in a code task, or None when it can."""
    text = glob.strip()
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", text) or text.startswith("~"):
        fix = text.lstrip("/\\~") or "src/feature/**"
        return (
            f"stream '{stream_id}' owns {glob!r}, an absolute path: ownership globs are "
            f"relative to the repository root, e.g. {fix!r}"
        )
    if ".." in parts:
        return (
            f"stream '{stream_id}' owns {glob!r}, which climbs out with '..': ownership globs "
            "name paths inside the repository, relative to its root"
        )
    if ".git" in parts:
        return (
            f"stream '{stream_id}' owns {glob!r}, inside '.git', which belongs to git: own "
            "the project's files only (tierd commits each stream's work itself)"
        )
    return None


def code_ownership_problems(
    owned: Sequence[tuple[str, list[str]]],
    may_run_together: Callable[[str, str], bool],
) -> list[str]:
    """The ownership problems of a code task's streams (id, non-blank globs), in plan order.

    `may_run_together(a, b)` says whether two streams may run at the same time (neither
    depends on the other, directly or through others).
    """
    problems: list[str] = []
    for stream_id, globs in owned:
        if not globs:
            problems.append(
                f"stream '{stream_id}' owns no paths: give it at least one ownership glob, the "
                "files it may change (e.g. 'src/feature/**' or 'tests/test_feature.py')"
            )
        problems.extend(p for g in globs if (p := glob_problem(stream_id, g)) is not None)
    for index, (first_id, first_globs) in enumerate(owned):
        for second_id, second_globs in owned[index + 1 :]:
            if first_id == second_id or not may_run_together(first_id, second_id):
                continue
            shared = [(a, b) for a in first_globs for b in second_globs if globs_overlap(a, b)]
            if shared:
                pairs = join_words(
                    [f"'{a}'" if a == b else f"'{a}' and '{b}'" for a, b in shared[:3]]
                )
                problems.append(
                    f"streams '{first_id}' and '{second_id}' can run at the same time but both "
                    f"own {pairs}: streams that run in parallel must own disjoint paths; give "
                    "those paths to one of them, or make one depend on the other"
                )
    return problems
