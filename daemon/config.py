"""Layered configuration: shipped defaults < global file < project file < task options.

The shipped `config/default.toml` is the schema: every key tierd knows is there, and its value
gives the key's type. A key that is not in it, or a value of the wrong type or outside the
allowed set, is refused with a message naming the key, the file and the line.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

#: Keys whose string value must be one of a fixed set.
CHOICES: dict[str, tuple[str, ...]] = {
    "rules.parallelize": ("when-possible", "always", "never"),
    "review.approval": ("none", "required"),
}
#: Keys with numeric bounds (inclusive).
BOUNDS: dict[str, tuple[float, float]] = {
    "server.port": (0, 65535),
    "concurrency.ceiling": (1, 10_000),
    "concurrency.floor": (0, 10_000),
    "concurrency.interval_ms": (10, 60_000),
    "concurrency.soft": (0.05, 1.0),
    "concurrency.hard": (0.05, 1.0),
    "plan.max_streams": (1, 200),
    "plan.max_attempts": (1, 20),
    "plan.split_depth": (0, 5),
    "review.max_rounds": (0, 20),
    "review.max_revisions": (0, 20),
}
#: List keys whose items are lists of strings rather than strings.
NESTED_LISTS = {"rules.coupled"}

PROJECT_FILE = ".tierd.toml"


class ConfigError(ValueError):
    """A configuration problem, with the key and where it was found."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None,
                 line: int | None = None) -> None:
        where = ""
        if path:
            where = f"{path}" + (f", line {line}" if line else "") + ": "
        super().__init__(where + message)
        self.key = key
        self.path = path
        self.line = line


def shipped_config_dir() -> Path:
    """The directory holding default.toml: the repo's `config/`, or the copy in the wheel."""
    repo = Path(__file__).resolve().parent.parent / "config"
    if (repo / "default.toml").is_file():
        return repo
    return Path(__file__).resolve().parent / "_config"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _line_of(text: str, key: str) -> int | None:
    """Best-effort line number of `key` in a TOML file's text, for error messages."""
    leaf = key.rsplit(".", 1)[-1]
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*\"?{re.escape(leaf)}\"?\s*=", line):
            return number
    return None


def check_value(key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Return `value` if it suits `key`, else raise ConfigError saying what is allowed."""
    if key not in defaults:
        section = key.rsplit(".", 1)[0] if "." in key else ""
        known = sorted(k for k in defaults if k.startswith(section + ".")) if section else []
        hint = f"; known keys in [{section}]: {', '.join(known)}" if known else ""
        raise ConfigError(f"unknown key '{key}'{hint}", key=key)
    default = defaults[key]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
        if ok:
            value = float(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    elif isinstance(default, list):
        if key in NESTED_LISTS:
            ok = isinstance(value, list) and all(
                isinstance(g, list) and all(isinstance(a, str) for a in g) for g in value
            )
            kind = 'a list of lists of strings, e.g. [["auth/", "db/"]]'
        else:
            ok = isinstance(value, list) and all(isinstance(a, str) for a in value)
            kind = "a list of strings"
    else:  # pragma: no cover - default.toml holds only the types above
        ok, kind = True, type(default).__name__
    if not ok:
        raise ConfigError(f"'{key}' must be {kind}, not {value!r}", key=key)
    if key in CHOICES and value not in CHOICES[key]:
        allowed = " | ".join(f'"{c}"' for c in CHOICES[key])
        raise ConfigError(f"'{key}' must be one of {allowed}, not {value!r}", key=key)
    if key in BOUNDS:
        lo, hi = BOUNDS[key]
        if not lo <= value <= hi:
            raise ConfigError(f"'{key}' must be between {lo:g} and {hi:g}, not {value!r}", key=key)
    return value


def parse_text_value(key: str, text: str, defaults: dict[str, Any]) -> Any:
    """Turn a command-line string into a value of the key's type (TOML syntax for lists)."""
    if key not in defaults:
        check_value(key, text, defaults)  # raises the unknown-key error
    default = defaults[key]
    if isinstance(default, str):
        return text
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return check_value(key, value, defaults)


@dataclass
class Layer:
    name: str
    path: str | None
    values: dict[str, Any]


@dataclass
class Config:
    """The effective configuration and, for each key, the layer it came from."""

    defaults: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)

    @property
    def values(self) -> dict[str, Any]:
        merged = dict(self.defaults)
        for layer in self.layers:
            merged.update(layer.values)
        return merged

    def get(self, key: str) -> Any:
        values = self.values
        if key in values:
            return copy.deepcopy(values[key])
        prefix = key + "."
        section = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
        if not section:
            raise ConfigError(f"unknown key '{key}'", key=key)
        return _nest(section)

    def source_of(self, key: str) -> str:
        for layer in reversed(self.layers):
            if key in layer.values:
                return layer.name + (f" ({layer.path})" if layer.path else "")
        return "default"

    def as_dict(self) -> dict[str, Any]:
        return _nest(self.values)

    def with_layer(self, layer: Layer) -> Config:
        return Config(self.defaults, [*self.layers, layer])


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return out


def load_defaults() -> dict[str, Any]:
    path = shipped_config_dir() / "default.toml"
    with path.open("rb") as f:
        return _flatten(tomllib.load(f))


def read_layer(name: str, path: Path, defaults: dict[str, Any]) -> Layer:
    """Read and check one TOML file; a broken one raises ConfigError with path and line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path=str(path),
                          line=int(match.group(1)) if match else None) from exc
    return Layer(name, str(path), check_values(_flatten(data), defaults, path=str(path),
                                                 text=text))


def check_values(flat: dict[str, Any], defaults: dict[str, Any], *, path: str | None = None,
                 text: str | None = None) -> dict[str, Any]:
    out = {}
    for key, value in flat.items():
        try:
            out[key] = check_value(key, value, defaults)
        except ConfigError as exc:
            line = _line_of(text, key) if text else None
            raise ConfigError(str(exc), key=key, path=path, line=line) from exc
    return out


def load_config(config_file: Path) -> Config:
    """Defaults plus the user's global file (if it exists)."""
    defaults = load_defaults()
    config = Config(defaults)
    if config_file.is_file():
        config = config.with_layer(read_layer("global", config_file, defaults))
    return config


def project_layer(project_dir: str, defaults: dict[str, Any]) -> Layer | None:
    path = Path(project_dir) / PROJECT_FILE
    if not path.is_file():
        return None
    return read_layer("project", path, defaults)


def set_user_value(config_file: Path, key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Write one key to the user's global file atomically, keeping its comments (tomlkit)."""
    value = check_value(key, value, defaults)
    text = config_file.read_text(encoding="utf-8") if config_file.exists() else ""
    doc = tomlkit.parse(text)
    *sections, leaf = key.split(".")
    node: Any = doc
    for part in sections:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
    node[leaf] = value
    config_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=config_file.parent, prefix=".config.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tomlkit.dumps(doc))
        os.replace(tmp, config_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value
