"""Globs as gitignore reads them, compiled to regular expressions: the one matcher of paths.

A code task's ownership entries and secret globs are gitignore-like: a pattern without a "/"
matches at any depth, one with a "/" is anchored at the root, a trailing "/" matches a
directory only, "**" spans directories. The plan validator (roles) and the tools that
enforce ownership (the engine) must read a glob the same way, so both use this module.
"""

from __future__ import annotations

import functools
import re

__all__ = ["compile_glob"]


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the `[...]` class starting at `pattern[i]`, and the index after it."""
    j = i + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 1
    if j >= len(pattern):
        return re.escape("["), i + 1
    body = pattern[i + 1 : j]
    if body[:1] in ("!", "^"):
        body = "^" + body[1:]
    return "[" + body.replace("\\", "\\\\") + "]", j + 1


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] in "*?":
            out.append("[^/]*" if pattern[i] == "*" else "[^/]")
            i += 1
        elif pattern[i] == "[":
            piece, i = _class(pattern, i)
            out.append(piece)
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> tuple[re.Pattern[str], bool] | None:
    """`pattern` as (regex over a "/"-separated relative path, directory-only), or None for a
    pattern that cannot be compiled (a malformed class)."""
    text = pattern.strip()
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    while text.startswith("./"):
        text = text[2:]
    if not text or text == ".":
        return re.compile(".*"), False  # the whole repository
    anchored = "/" in text
    text = text.lstrip("/")
    if not anchored and not text.startswith("**"):
        text = "**/" + text
    try:
        return re.compile(_translate(text)), dir_only
    except re.error:  # a malformed class: such a glob matches nothing it could be sure of
        return None
