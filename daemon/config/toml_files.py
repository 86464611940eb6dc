"""Reading TOML files: the text, parsed into dotted keys, and the line where a key is set.

Every problem names the file, and the line when it can be found, so a message about a key
points at the place to fix it.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

from daemon.config.errors import ConfigError


def flatten(
    data: dict[str, Any], prefix: str = "", leaves: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Dotted keys of a parsed TOML document.

    A table where `leaves` (the defaults) has a plain key stays a value, so that
    `parallelize = {a = 1}` is reported as a wrong type rather than as unknown key
    `rules.parallelize.a`. An empty table stays a value too, so an unknown one is reported.
    """
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and (leaves is None or key not in leaves):
            out.update(flatten(v, key + ".", leaves))
        else:
            out[key] = v
    return out


_BARE_OR_QUOTED = r'[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\''
_DOTTED = rf"(?:{_BARE_OR_QUOTED})(?:\s*\.\s*(?:{_BARE_OR_QUOTED}))*"
_HEADER_RE = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _key_parts(dotted: str) -> list[str]:
    parts = re.findall(_BARE_OR_QUOTED, dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def line_of(text: str, key: str) -> int | None:
    """Best-effort line number of `key` in a TOML file's text, for error messages.

    Follows `[table]` headers and dotted keys, so `models.planner.timeout_s` is found under
    `[models.planner]` and not under `[models.orchestrator]`. A key set inside an inline table
    (`rules = {parallelize = "x"}`) is reported at the line of that assignment, and a table
    with nothing in it at its header.
    """
    target = key.split(".")
    header: list[str] = []
    fallback: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        found = _HEADER_RE.match(line)
        if found:
            header = _key_parts(found.group(1))
            if header == target and fallback is None:
                fallback = number
            continue
        found = _ASSIGN_RE.match(line)
        if not found:
            continue
        full = header + _key_parts(found.group(1))
        if full == target[: len(full)]:
            return number
    return fallback


def _decode_error_line(exc: tomllib.TOMLDecodeError, text: str) -> int | None:
    found = re.search(r"line (\d+)", str(exc))
    if found:
        return int(found.group(1))
    if "end of document" in str(exc):
        return max(1, len(text.splitlines()))
    return None


def read_text(path: Path) -> str:
    """A file's text; a file that cannot be read or is not UTF-8 raises ConfigError."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", path=str(path)) from exc


#: An integer Python will not read (more than 4300 digits): tomllib raises a bare ValueError.
_LONG_DIGITS = re.compile(r"[0-9_]{4300,}", re.ASCII)


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """The parsed document; invalid TOML raises ConfigError with the file and line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}", path=str(path), line=_decode_error_line(exc, text)
        ) from exc
    except ValueError as exc:  # an integer too long for Python to read
        found = _LONG_DIGITS.search(text)
        if found is None:
            raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
        raise ConfigError(
            "a number far too large (more than 4000 digits): no key allows it",
            path=str(path),
            line=text.count("\n", 0, found.start()) + 1,
        ) from exc


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys back into nested tables (values copied)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return out
