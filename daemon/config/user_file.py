"""Writing the user's global file: one key set, or one item added to a list, atomically,
under a lock, keeping the file's comments and layout (tomlkit), and never leaving a file the
daemon could not start on.
"""

from __future__ import annotations

import contextlib
import copy
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from daemon.config.checks import check_value
from daemon.config.effective import Config, layer_from_text
from daemon.config.errors import ConfigError, ConfigNotWritable
from daemon.config.schema import unknown_key
from daemon.config.toml_files import parse_toml, read_text

try:  # POSIX: serialize writers of the global file (the CLI and the daemon may both write it)
    import fcntl
except ImportError:  # pragma: no cover - tierd runs on POSIX systems
    fcntl = None  # type: ignore[assignment]


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
    try:
        return _update_locked(config_file, target, key, defaults, change)
    except OSError as exc:
        # A read-only home, a full disk, a file where the directory should be: one line that
        # names the file and the reason, never a traceback.
        raise ConfigNotWritable(str(target), exc.strerror or str(exc), exc.errno) from exc


def _update_locked(
    config_file: Path,
    target: Path,
    key: str,
    defaults: dict[str, Any],
    change: Callable[[Any], Any],
) -> Any:
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent):
        text = read_text(target) if target.exists() else ""
        parse_toml(text, config_file)  # a broken file is reported with its line, not rewritten
        try:
            doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:  # pragma: no cover - tomllib agreed
            raise ConfigError(
                f"not valid TOML: {exc}", path=str(config_file), line=getattr(exc, "line", None)
            ) from exc
        result = change(doc)
        new_text = tomlkit.dumps(doc)
        try:
            layer = layer_from_text("global", config_file, new_text, defaults)
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
    disagrees with another key (`concurrency.floor` above `concurrency.ceiling`, ...);
    ConfigNotWritable when the file cannot be written (a read-only home, a full disk).
    """
    value = check_value(key, value, defaults)

    def change(doc: Any) -> Any:
        node, leaf = _node_for(doc, key)
        node[leaf] = _toml_item(key, value)
        return value

    return _update_user_file(config_file, key, defaults, change)


def set_user_values(
    config_file: Path, values: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Write several keys to the user's global file in one atomic write (`tierd config
    models`): all of them or, when one is refused, none. Returns the checked values."""
    checked = {key: check_value(key, value, defaults) for key, value in values.items()}

    def change(doc: Any) -> dict[str, Any]:
        for key, value in checked.items():
            node, leaf = _node_for(doc, key)
            node[leaf] = _toml_item(key, value)
        return checked

    return _update_user_file(config_file, ",".join(checked), defaults, change)


def add_to_user_list(
    config_file: Path, key: str, item: Any, defaults: dict[str, Any]
) -> tuple[list[Any], bool]:
    """Append `item` to the list `key` of the global file unless it is there already.

    Read, append and write happen under one lock, so two `tierd rules add` at once both land.
    Returns the new list and whether it changed. The file's own list is extended (a key the
    file does not set starts from the shipped default).
    """
    if key not in defaults:
        raise unknown_key(key, defaults)
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
