"""Checking values: each key against its type and what `daemon.config.schema` allows, a layer
against who may set what, and the keys that must agree with each other.

Numbers are checked against their range before anything converts them: a 310-digit integer
given for a float key would overflow `float()`, and one beyond 64 bits would overflow SQLite's
INTEGER wherever it is stored; both are refused naming the key and the allowed range.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from typing import Any

from daemon.config.errors import ConfigError
from daemon.config.schema import (
    BOUNDS,
    CHOICES,
    NESTED_LISTS,
    ORDERED,
    PATTERNS,
    PROJECT_FILE,
    PROJECT_KEYS,
    PROJECT_SECTIONS,
    SECRET_KEYS,
    generic_key,
    is_table,
    project_may_set,
    unknown_key,
)
from daemon.config.toml_files import line_of

#: Longest value echoed in a message; a longer one is cut (a pasted file is not a value).
_SHOWN_CHARS = 80


def _shown(key: str, value: Any) -> str:
    if generic_key(key) in SECRET_KEYS:
        return "the value given"  # it may be the secret itself: never echo it
    if _is_int(value):
        return _shown_number(value)
    try:
        text = repr(value)
    except ValueError:  # e.g. a list holding an integer of more than 4300 digits
        return f"a {type(value).__name__} too large to show"
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[: _SHOWN_CHARS - 20]}... ({len(text)} characters)"


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


#: The widest integer anything may hold: SQLite's INTEGER (and Python's float stops at ~1.8e308).
INT64 = (-(1 << 63), (1 << 63) - 1)
#: Integers longer than this are described by their size, not printed (Python refuses to turn
#: an integer of more than 4300 digits into text at all).
_SHOWN_DIGITS = 24


def _shown_number(value: Any) -> str:
    """A number as a message shows it: a huge integer by its length, never in full."""
    if _is_int(value) and abs(value).bit_length() > _SHOWN_DIGITS * 3.33:
        if abs(value).bit_length() > 14_000:
            return "an integer of more than 4000 digits"
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(a, str) for a in value)


def _is_groups(value: Any) -> bool:
    return isinstance(value, list) and all(_is_strings(g) for g in value)


def _expected(key: str, default: Any) -> tuple[Callable[[Any], bool], str]:
    """The test a value of `key` must pass, given its default, and how to name it."""
    # bool before int: True is an int to Python, not to a TOML file.
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        return _is_int, "an integer"
    if isinstance(default, float):
        return _is_number, "a number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "a string"
    if isinstance(default, list) and key in NESTED_LISTS:
        return _is_groups, 'a list of lists of strings, e.g. [["auth/", "db/"]]'
    if isinstance(default, list):
        return _is_strings, "a list of strings"
    return (lambda v: True), type(default).__name__  # pragma: no cover - not in default.toml


def _check_type(key: str, value: Any, default: Any) -> Any:
    """`value` if it has the type of `default`, else ConfigError."""
    ok, kind = _expected(key, default)
    if not ok(value):
        if isinstance(value, dict):
            raise ConfigError(f"'{key}' must be {kind}, not a table", key=key)
        raise ConfigError(f"'{key}' must be {kind}, not {_shown(key, value)}", key=key)
    return value


def _check_number(key: str, value: Any, default: Any) -> Any:
    """A number within its key's range (an integer taken as a float where a number is
    expected), else ConfigError naming the range. Checked before `float()`, which a huge
    integer would overflow."""
    if not _is_number(default):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"'{key}' must be a finite number, not {value!r}", key=key)
    lo, hi = BOUNDS.get(generic_key(key), INT64)
    # Python compares integers and floats exactly, whatever their size: no overflow here.
    if not lo <= value <= hi:
        raise ConfigError(
            f"'{key}' must be between {_fmt(lo)} and {_fmt(hi)}, not {_shown_number(value)}",
            key=key,
        )
    return float(value) if isinstance(default, float) else value


def _check_choice(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        allowed = " | ".join(f'"{c}"' for c in CHOICES[key])
        raise ConfigError(f"'{key}' must be one of {allowed}, not {_shown(key, value)}", key=key)


def _check_format(key: str, value: Any) -> None:
    pattern = PATTERNS.get(generic_key(key))
    if pattern is not None:
        regex, meaning = pattern
        for item in value if isinstance(value, list) else [value]:
            if not re.fullmatch(regex, item):
                raise ConfigError(f"'{key}' must be {meaning}, not {_shown(key, item)}", key=key)
    if key in NESTED_LISTS:
        for group in value:
            if not group or not all(area.strip() for area in group):
                raise ConfigError(
                    f"'{key}': every group must name one or more non-blank "
                    f'areas, e.g. [["auth/", "db/"]], not {group!r}',
                    key=key,
                )


def check_value(key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Return `value` if it suits `key`, else raise ConfigError saying what is allowed."""
    if key not in defaults:
        raise unknown_key(key, defaults)
    value = _check_type(key, value, defaults[key])
    value = _check_number(key, value, defaults[key])
    _check_choice(key, value)
    _check_format(key, value)
    return value


#: An integer in TOML's decimal syntax, ASCII digits only (`re.ASCII`: `\d` is no Unicode digit).
_TOO_LONG_INTEGER = re.compile(r"[+-]?[0-9](?:_?[0-9]){4000,}", re.ASCII)
#: Stands in for an integer too long for Python to read: larger than any range allows.
_HUGE = 1 << 14_001


def parse_text_value(key: str, text: str, defaults: dict[str, Any]) -> Any:
    """Turn a command-line string into a value of the key's type (TOML syntax for lists).

    A string key takes the text as it is; any other key reads it as a TOML value (`5`, `0.8`,
    `true`, `["a", "b"]`), and the result is checked like any other value.
    """
    if key not in defaults:
        raise unknown_key(key, defaults)
    if isinstance(defaults[key], str):
        return check_value(key, text, defaults)
    try:
        parsed = tomllib.loads(f"v = {text}")
    except ValueError:  # TOMLDecodeError, or an integer too long to read (> 4300 digits)
        parsed = {}
    if not parsed and _TOO_LONG_INTEGER.fullmatch(text.strip()):
        # Python will not read it; any integer that long is out of every range, so stand in
        # one of its size for it, and the range check names the key and what is allowed.
        parsed = {"v": -_HUGE if text.strip().startswith("-") else _HUGE}
    # Anything but one value (`5\nother = 6`) is not a value: checked as the text it is, which
    # names the type wanted. So is what TOML does not read as a number: "²" or "١٢" are digits
    # to `str.isdigit()` and `int()`, never to TOML.
    value = parsed["v"] if list(parsed) == ["v"] else text
    return check_value(key, value, defaults)


def check_values(
    flat: dict[str, Any],
    defaults: dict[str, Any],
    *,
    path: str | None = None,
    text: str | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """Check every key of one layer; the first problem raises, with its file and line.

    `layer="project"` also refuses keys outside `PROJECT_SECTIONS` and `PROJECT_KEYS`.
    """
    out = {}
    for key, value in flat.items():
        line = line_of(text, key) if text else None
        if isinstance(value, dict) and not value and is_table(key, defaults):
            continue  # an empty known table, e.g. a bare `[rules]`
        if (
            layer == "project"
            and not project_may_set(key)
            and (key in defaults or is_table(key.split(".", 1)[0], defaults))
        ):
            allowed = ", ".join([*(f"[{s}]" for s in PROJECT_SECTIONS), *PROJECT_KEYS])
            raise ConfigError(
                f"'{key}' cannot be set in a project's {PROJECT_FILE}: a project file may set "
                f"only {allowed}; models, API keys, notify, the sandbox and the daemon's own "
                "settings belong in your global config file (`tierd config set`)",
                key=key,
                path=path,
                line=line,
            )
        try:
            out[key] = check_value(key, value, defaults)
        except ConfigError as exc:
            raise ConfigError(exc.message, key=key, path=path, line=line) from exc
    return out


def ordered_problem(values: dict[str, Any]) -> tuple[str, str, str] | None:
    for low, high in ORDERED:
        if values[low] > values[high]:
            return (
                low,
                high,
                (f"'{low}' ({values[low]!r}) must not exceed '{high}' ({values[high]!r})"),
            )
    return None
