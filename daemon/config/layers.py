"""Layered configuration: shipped defaults < global file < project file < task options.

The shipped `config/default.toml` is the schema: every key tierd knows is there, and its value
gives the key's type; the tables below add what a type alone cannot say (allowed values,
ranges, formats, keys that must agree with each other). A key that is not in it, or a value of
the wrong type or outside what is allowed, is refused with a message naming the key and what
is allowed, plus the file and line when it came from a file.

Who may set what:

- the global file (`$TIERD_HOME/config.toml`, else `$XDG_CONFIG_HOME/tierd/config.toml`):
  every key. `tierd config set`, `tierd rules ...` and JSON-RPC `config/set` write it.
- a project's `.tierd.toml` (the root of the `options.project_dir` a task names): only the
  `[plan]`, `[review]` and `[rules]` tables (`PROJECT_SECTIONS`). A project file travels with
  a repository, so it is not trusted with anything that reaches outside the task: `models.*`
  (an `api_base` plus an `api_key_env` would send any variable of the daemon's environment to
  a server of the file's choosing, and `model` alone can send the default key to another
  provider or pick an expensive model), `notify.command` (runs a program), and the daemon-wide
  tables `server`, `store`, `limits` and `concurrency`, which one task cannot change anyway.
  Such a key is refused (never silently ignored), naming the key and the file.
- a task's own options (JSON `options` of `task/submit`): the few keys the API maps,
  `review.approval`, `rules.*` and `plan.max_streams`.

Later layers replace a value whole: a project's `rules.instructions` replaces the global list.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

try:  # POSIX: serialize writers of the global file (the CLI and the daemon may both write it)
    import fcntl
except ImportError:  # pragma: no cover - tierd runs on POSIX systems
    fcntl = None  # type: ignore[assignment]

PROJECT_FILE = ".tierd.toml"
#: The layers, lowest first; `Config.source_of` names them.
LAYERS = ("default", "global", "project", "task")
#: The only tables a project's `.tierd.toml` may set (see the module docstring for why).
PROJECT_SECTIONS = ("plan", "review", "rules")

#: Keys whose string value must be one of a fixed set.
CHOICES: dict[str, tuple[str, ...]] = {
    "rules.parallelize": ("when-possible", "always", "never"),
    "review.approval": ("none", "required"),
}
#: Keys with numeric bounds (inclusive). `models.*.x` stands for every role's table.
BOUNDS: dict[str, tuple[float, float]] = {
    "server.port": (0, 65535),
    "server.max_body_bytes": (1024, 1 << 30),
    "limits.max_goal_chars": (1, 10_000_000),
    "limits.max_context_chars": (0, 100_000_000),
    "limits.max_active_tasks": (1, 1_000_000),
    "limits.max_event_streams": (1, 100_000),
    "models.*.timeout_s": (0.1, 86_400),
    "models.*.max_retries": (0, 20),
    "plan.max_streams": (1, 200),
    "plan.max_attempts": (1, 20),
    "plan.split_depth": (0, 5),
    "review.max_rounds": (0, 20),
    "review.max_revisions": (0, 20),
    "concurrency.ceiling": (1, 10_000),
    "concurrency.floor": (0, 10_000),
    "concurrency.interval_ms": (10, 60_000),
    "concurrency.soft": (0.05, 1.0),
    "concurrency.hard": (0.05, 1.0),
    "concurrency.reserve_bytes": (0, 1 << 50),
    "concurrency.cooldown_s": (0, 3600),
    "concurrency.min_agent_bytes": (1, 1 << 40),
}
#: Strings (or, for lists, each item) that must match a pattern: (regex, what it means).
PATTERNS: dict[str, tuple[str, str]] = {
    "server.host": (r"\S+", "a host name or IP address"),
    "server.allowed_origins": (
        r"(?i)[a-z][a-z0-9+.-]*://[^/\s]+/?",
        "origins of the form scheme://host[:port] (no path)",
    ),
    "store.url": (
        r"|[a-z][a-z0-9+]*://.*",
        'a SQLAlchemy URL such as "sqlite:///path", or "" for the default',
    ),
    "models.*.api_base": (
        r"|https?://\S+",
        'an http:// or https:// URL, or "" for the provider\'s own',
    ),
    "models.*.api_key_env": (
        r"|[A-Za-z_][A-Za-z0-9_]*",
        "the NAME of an environment variable holding the key (letters, "
        'digits and _, e.g. "OPENAI_API_KEY"), never the key itself; "" '
        "for a server that needs none",
    ),
    "models.*.fallbacks": (
        r".*\S.*",
        "litellm model names, each optionally followed by @ and an http(s) URL",
    ),
    "rules.instructions": (r"(?s).*\S.*", "non-blank sentences"),
}
#: Values never echoed in an error message (someone may paste the key itself there).
SECRET_KEYS = {"models.*.api_key_env"}
#: List keys whose items are lists of strings rather than strings.
NESTED_LISTS = {"rules.coupled"}
#: (a, b): a must not exceed b in the effective configuration.
ORDERED: tuple[tuple[str, str], ...] = (
    ("concurrency.floor", "concurrency.ceiling"),
    ("concurrency.soft", "concurrency.hard"),
)
#: Keys (or `table.` prefixes) a running daemon reads only at start: a change to them is
#: written, and takes effect at the next `tierd serve`. `concurrency.ceiling` is applied at once.
RESTART_KEYS = ("server.", "store.", "concurrency.")
LIVE_KEYS = ("concurrency.ceiling",)


class ConfigError(ValueError):
    """A configuration problem, with the key and where it was found."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        where = ""
        if path:
            where = f"{path}" + (f", line {line}" if line else "") + ": "
        super().__init__(where + message)
        self.message = message
        self.key = key
        self.path = path
        self.line = line


def shipped_config_dir() -> Path:
    """The directory holding default.toml: the repo's `config/`, or the copy in the wheel."""
    repo = Path(__file__).resolve().parents[2] / "config"
    if (repo / "default.toml").is_file():
        return repo
    return Path(__file__).resolve().parents[1] / "_config"


def generic_key(key: str) -> str:
    """`models.executor.timeout_s` -> `models.*.timeout_s`, the form the tables above use."""
    return re.sub(r"^models\.[^.]+\.", "models.*.", key)


def needs_restart(key: str) -> bool:
    """Whether a running daemon only picks up a change of `key` at its next start."""
    return key not in LIVE_KEYS and key.startswith(RESTART_KEYS)


def project_may_set(key: str) -> bool:
    return key.split(".", 1)[0] in PROJECT_SECTIONS


# --- reading --------------------------------------------------------------------------------


def _flatten(
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
            out.update(_flatten(v, key + ".", leaves))
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


def _line_of(text: str, key: str) -> int | None:
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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", path=str(path)) from exc


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}", path=str(path), line=_decode_error_line(exc, text)
        ) from exc


# --- checking -------------------------------------------------------------------------------


def _is_table(key: str, defaults: dict[str, Any]) -> bool:
    return any(k.startswith(key + ".") for k in defaults)


def _unknown(key: str, defaults: dict[str, Any]) -> ConfigError:
    if _is_table(key, defaults):
        keys = sorted(k for k in defaults if k.startswith(key + "."))
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        return ConfigError(
            f"'{key}' is a table, not a value: set one of its keys ({shown})", key=key
        )
    section = key.rsplit(".", 1)[0] if "." in key else ""
    hint = ""
    close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.8)
    if close:
        hint = f"; did you mean '{close[0]}'?"
    elif section and _is_table(section, defaults):
        known = sorted(k for k in defaults if k.startswith(section + "."))
        hint = f"; known keys in [{section}]: {', '.join(known)}"
    elif "." in key and not _is_table(key.split(".", 1)[0], defaults):
        tables = sorted({k.split(".", 1)[0] for k in defaults})
        hint = f"; the tables are: {', '.join(tables)}"
    return ConfigError(f"unknown key '{key}'{hint}", key=key)


def _shown(key: str, value: Any) -> str:
    if generic_key(key) in SECRET_KEYS:
        return "the value given"  # it may be the secret itself: never echo it
    return repr(value)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def check_value(key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Return `value` if it suits `key`, else raise ConfigError saying what is allowed."""
    if key not in defaults:
        raise _unknown(key, defaults)
    gkey = generic_key(key)
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
            if not math.isfinite(value):
                raise ConfigError(f"'{key}' must be a finite number, not {value!r}", key=key)
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
        if isinstance(value, dict):
            raise ConfigError(f"'{key}' must be {kind}, not a table", key=key)
        raise ConfigError(f"'{key}' must be {kind}, not {_shown(key, value)}", key=key)
    if key in CHOICES and value not in CHOICES[key]:
        allowed = " | ".join(f'"{c}"' for c in CHOICES[key])
        raise ConfigError(f"'{key}' must be one of {allowed}, not {value!r}", key=key)
    bounds = BOUNDS.get(gkey)
    if bounds is not None:
        lo, hi = bounds
        if not lo <= value <= hi:
            raise ConfigError(
                f"'{key}' must be between {_fmt(lo)} and {_fmt(hi)}, not {value!r}", key=key
            )
    pattern = PATTERNS.get(gkey)
    if pattern is not None:
        regex, meaning = pattern
        items = value if isinstance(value, list) else [value]
        for item in items:
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
    return value


def parse_text_value(key: str, text: str, defaults: dict[str, Any]) -> Any:
    """Turn a command-line string into a value of the key's type (TOML syntax for lists).

    A string key takes the text as it is; any other key reads it as a TOML value (`5`, `0.8`,
    `true`, `["a", "b"]`), and the result is checked like any other value.
    """
    if key not in defaults:
        raise _unknown(key, defaults)
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
        line = _line_of(text, key) if text else None
        if isinstance(value, dict) and not value and _is_table(key, defaults):
            continue  # an empty known table, e.g. a bare `[rules]`
        if (
            layer == "project"
            and not project_may_set(key)
            and (key in defaults or _is_table(key.split(".", 1)[0], defaults))
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


def _ordered_problem(values: dict[str, Any]) -> tuple[str, str, str] | None:
    for low, high in ORDERED:
        if values[low] > values[high]:
            return (
                low,
                high,
                (f"'{low}' ({values[low]!r}) must not exceed '{high}' ({values[high]!r})"),
            )
    return None


# --- layers and the effective configuration -------------------------------------------------


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass
class Layer:
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
            raise _unknown(key, self.defaults)
        return _nest(section)

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
        if key not in self.defaults and _is_table(key, self.defaults):
            sources = dict.fromkeys(
                self.source_of(k) for k in sorted(self.defaults) if k.startswith(key + ".")
            )
            return "; ".join(sources)
        layer = self.layer_of(key)
        if layer is None:
            return "default"
        return layer.name + (f" ({layer.path})" if layer.path else "")

    def as_dict(self) -> dict[str, Any]:
        return _nest(self.values)

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
        problem = _ordered_problem(values)
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
    text = _read_text(path)
    return _layer_from_text(name, path, text, defaults)


def _layer_from_text(name: str, path: Path, text: str, defaults: dict[str, Any]) -> Layer:
    flat = _flatten(_parse(text, path), leaves=defaults)
    values = check_values(flat, defaults, path=str(path), text=text, layer=name)
    lines = {k: line for k in values if (line := _line_of(text, k)) is not None}
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


# --- writing the global file ----------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<directory>/.config.toml.lock` (one writer at a time)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory / ".config.toml.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _toml_item(key: str, value: Any, *, top: bool = True) -> Any:
    """A tomlkit item for `value`; rule lists with several entries get one per line."""
    if isinstance(value, list):
        array = tomlkit.array()
        for item in value:
            array.append(_toml_item(key, item, top=False) if isinstance(item, list) else item)
        if top and key.startswith("rules.") and len(value) > 1:
            array.multiline(True)
        return array
    return value


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".config.", suffix=".toml.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _update_user_file(
    config_file: Path, key: str, defaults: dict[str, Any], change: Callable[[Any], Any]
) -> Any:
    """Read the global file, apply `change(doc)` to its tomlkit document, check the whole
    result (every key, and keys that must agree) and write it back atomically.

    Comments and layout are kept. Nothing is written if the result would be refused, so the
    file on disk is always one the daemon can start on. A symlinked file (dotfiles) is
    written through the link. Returns what `change` returned. A refusal caused by the new
    value of `key` names no file line (nothing was written); one caused by something else
    already in the file names its path and line.
    """
    target = config_file.resolve() if config_file.is_symlink() else config_file
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent):
        text = _read_text(target) if target.exists() else ""
        _parse(text, config_file)  # a broken file is reported with its line, not rewritten
        try:
            doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:  # pragma: no cover - tomllib agreed
            raise ConfigError(
                f"not valid TOML: {exc}", path=str(config_file), line=getattr(exc, "line", None)
            ) from exc
        result = change(doc)
        new_text = tomlkit.dumps(doc)
        try:
            layer = _layer_from_text("global", config_file, new_text, defaults)
            Config(defaults, [layer]).check()
        except ConfigError as exc:
            if exc.key == key or f"'{key}'" in exc.message:
                raise ConfigError(exc.message, key=exc.key) from exc
            raise
        if new_text != text or not target.exists():
            _write_atomically(target, new_text)
    return result


def _node_for(doc: Any, key: str) -> tuple[Any, str]:
    *sections, leaf = key.split(".")
    node: Any = doc
    for depth, part in enumerate(sections):
        if part not in node:
            # Intermediate tables (`models` of `models.planner.model`) get no header of their own.
            node[part] = tomlkit.table(is_super_table=depth < len(sections) - 1)
        node = node[part]
    return node, leaf


def set_user_value(config_file: Path, key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Write one key to the user's global file atomically, keeping its comments (tomlkit).

    Raises ConfigError, and writes nothing, for an unknown key, a wrong value, or a value that
    disagrees with another key (`concurrency.floor` above `concurrency.ceiling`, ...).
    """
    value = check_value(key, value, defaults)

    def change(doc: Any) -> Any:
        node, leaf = _node_for(doc, key)
        node[leaf] = _toml_item(key, value)
        return value

    return _update_user_file(config_file, key, defaults, change)


def add_to_user_list(
    config_file: Path, key: str, item: Any, defaults: dict[str, Any]
) -> tuple[list[Any], bool]:
    """Append `item` to the list `key` of the global file unless it is there already.

    Read, append and write happen under one lock, so two `tierd rules add` at once both land.
    Returns the new list and whether it changed. The file's own list is extended (a key the
    file does not set starts from the shipped default).
    """
    if key not in defaults:
        raise _unknown(key, defaults)
    if not isinstance(defaults[key], list):
        raise ConfigError(f"'{key}' is not a list", key=key)
    check_value(key, [item], defaults)

    def change(doc: Any) -> tuple[list[Any], bool]:
        node, leaf = _node_for(doc, key)
        current = node[leaf].unwrap() if leaf in node else copy.deepcopy(defaults[key])
        if item in current:
            return current, False
        current = [*current, item]
        node[leaf] = _toml_item(key, current)
        return current, True

    return _update_user_file(config_file, key, defaults, change)


def format_show(config: Config) -> str:
    """`tierd config show` as text: `key = value  # source`, one key a line, TOML values."""
    rows = [(k, tomlkit.item(v).as_string(), s) for k, v, s in config.rows()]
    width = max(len(k) + len(v) + 3 for k, v, _ in rows)
    return "\n".join(f"{f'{k} = {v}':<{width}}  # {s}" for k, v, s in rows) + "\n"
