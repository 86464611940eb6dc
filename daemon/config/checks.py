"""Checking values: each key against its type and what `daemon.config.schema` allows, a layer
against who may set what, and the keys that must agree with each other.
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
    PROJECT_SECTIONS,
    SECRET_KEYS,
    generic_key,
    is_table,
    project_may_set,
    unknown_key,
)
from daemon.config.toml_files import line_of


def _shown(key: str, value: Any) -> str:
    if generic_key(key) in SECRET_KEYS:
        return "the value given"  # it may be the secret itself: never echo it
    return repr(value)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


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
    """`value` if it has the type of `default` (an integer taken as a float where a number
    is expected), else ConfigError."""
    ok, kind = _expected(key, default)
    if not ok(value):
        if isinstance(value, dict):
            raise ConfigError(f"'{key}' must be {kind}, not a table", key=key)
        raise ConfigError(f"'{key}' must be {kind}, not {_shown(key, value)}", key=key)
    if isinstance(default, float):
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, not {value!r}", key=key)
    return value


def _check_choice_and_bounds(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        allowed = " | ".join(f'"{c}"' for c in CHOICES[key])
        raise ConfigError(f"'{key}' must be one of {allowed}, not {value!r}", key=key)
    bounds = BOUNDS.get(generic_key(key))
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        lo, hi = bounds
        raise ConfigError(
            f"'{key}' must be between {_fmt(lo)} and {_fmt(hi)}, not {value!r}", key=key
        )


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
    _check_choice_and_bounds(key, value)
    _check_format(key, value)
    return value


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
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
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

    `layer="project"` also refuses keys outside `PROJECT_SECTIONS`.
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
            allowed = ", ".join(f"[{s}]" for s in PROJECT_SECTIONS)
            raise ConfigError(
                f"'{key}' cannot be set in a project's {PROJECT_FILE}: a project file may set "
                f"only {allowed}; models, API keys, notify and the daemon's own settings "
                "belong in your global config file (`tierd config set`)",
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
