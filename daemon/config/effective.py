"""The effective configuration: the layers stacked over the shipped defaults, and for each
key the layer (and file) its value came from.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config.checks import check_values, ordered_problem
from daemon.config.errors import ConfigError
from daemon.config.schema import PROJECT_FILE, is_table, load_defaults, unknown_key
from daemon.config.toml_files import flatten, line_of, nest, parse_toml, read_text


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass
class Layer:
    """One layer's checked values, and where they came from."""

    name: str
    path: str | None
    values: dict[str, Any]
    #: Line of each key in the file, for messages about keys that disagree.
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Config:
    """The effective configuration and, for each key, the layer it came from."""

    defaults: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)
    #: The global file this was loaded from (it may not exist), and its state when read.
    config_file: Path | None = None
    stamp: tuple[int, int, int] | None = None

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
        section = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        if not section:
            raise unknown_key(key, self.defaults)
        return nest(section)

    def layer_of(self, key: str) -> Layer | None:
        """The layer `key`'s effective value came from; None for the shipped default."""
        for layer in reversed(self.layers):
            if key in layer.values:
                return layer
        return None

    def source_of(self, key: str) -> str:
        """Where `key`'s value came from: "default", or a layer's name and file.

        E.g. "global (/home/me/.config/tierd/config.toml)", "project (/src/app/.tierd.toml)",
        "task".

        For a table (`rules`), the source of each of its keys, when they differ.
        """
        if key not in self.defaults and is_table(key, self.defaults):
            sources = dict.fromkeys(
                self.source_of(k) for k in sorted(self.defaults) if k.startswith(key + ".")
            )
            return "; ".join(sources)
        layer = self.layer_of(key)
        if layer is None:
            return "default"
        return layer.name + (f" ({layer.path})" if layer.path else "")

    def as_dict(self) -> dict[str, Any]:
        return nest(self.values)

    def rows(self) -> list[tuple[str, Any, str]]:
        """(key, effective value, source) for every key, sorted by key: `tierd config show`."""
        values = self.values
        return [(k, copy.deepcopy(values[k]), self.source_of(k)) for k in sorted(values)]

    def with_layer(self, layer: Layer) -> Config:
        return Config(self.defaults, [*self.layers, layer], self.config_file, self.stamp)

    def check(self) -> None:
        """Refuse keys that disagree with each other (`ORDERED`), naming both and the file
        and line of the one set last."""
        values = self.values
        problem = ordered_problem(values)
        if problem is None:
            return
        low, high, message = problem
        for layer in reversed(self.layers):
            for key in (low, high):
                if key in layer.values:
                    raise ConfigError(message, key=key, path=layer.path, line=layer.lines.get(key))
        raise ConfigError(message, key=low)  # pragma: no cover - the defaults agree

    def changed_on_disk(self) -> bool:
        """Whether the global file was created, changed or removed since it was read."""
        return self.config_file is not None and _stamp(self.config_file) != self.stamp


def read_layer(name: str, path: Path, defaults: dict[str, Any]) -> Layer:
    """Read and check one TOML file; a broken one raises ConfigError with path and line."""
    text = read_text(path)
    return layer_from_text(name, path, text, defaults)


def layer_from_text(name: str, path: Path, text: str, defaults: dict[str, Any]) -> Layer:
    """A checked layer from a TOML file's text (`path` names it in messages)."""
    flat = flatten(parse_toml(text, path), leaves=defaults)
    values = check_values(flat, defaults, path=str(path), text=text, layer=name)
    lines = {k: line for k in values if (line := line_of(text, k)) is not None}
    return Layer(name, str(path), values, lines)


def load_config(config_file: Path) -> Config:
    """Defaults plus the user's global file (if it exists); raises ConfigError if broken."""
    defaults = load_defaults()
    stamp = _stamp(config_file)
    config = Config(defaults, config_file=config_file, stamp=stamp)
    if config_file.is_file():
        config = config.with_layer(read_layer("global", config_file, defaults))
    elif config_file.exists():
        raise ConfigError("not a regular file", path=str(config_file))
    config.check()
    return config


def reload_if_changed(config: Config) -> Config:
    """`config` itself, or the global file read again if it changed since (hand edits).

    Raises ConfigError if the changed file is broken; the caller keeps the old one then.
    """
    if config.config_file is None or not config.changed_on_disk():
        return config
    return load_config(config.config_file)


def project_layer(project_dir: str, defaults: dict[str, Any]) -> Layer | None:
    """The `.tierd.toml` at the root of `project_dir`, or None if it has none.

    `project_dir` must be an absolute path (the daemon's working directory means nothing to
    the client that named it). The file may set only `PROJECT_SECTIONS`.
    """
    if not os.path.isabs(project_dir):
        raise ConfigError(
            f"the project directory must be an absolute path, not {project_dir!r}",
            key="options.project_dir",
        )
    path = Path(project_dir) / PROJECT_FILE
    if not path.exists():
        return None
    if not path.is_file():
        raise ConfigError("not a regular file", path=str(path))
    return read_layer("project", path, defaults)
