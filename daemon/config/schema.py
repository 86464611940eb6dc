"""The schema: the keys tierd knows and what each allows.

The shipped `config/default.toml` is the schema: every key tierd knows is there, and its value
gives the key's type; the tables below add what a type alone cannot say (allowed values,
ranges, formats, keys that must agree with each other), and which keys a project file may set
and a running daemon picks up at once.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from daemon.config.errors import ConfigError
from daemon.config.toml_files import flatten

PROJECT_FILE = ".tierd.toml"
#: The layers, lowest first; `Config.source_of` names them.
LAYERS = ("default", "global", "project", "task")
#: The only tables a project's `.tierd.toml` may set (`daemon.config.layers` says why).
PROJECT_SECTIONS = ("plan", "review", "rules")
#: Keys of other tables a project file may set: the commands of a code task. They run in
#: the sandbox, as the repository's own tests do; what would widen the sandbox
#: (setup_network, allow_shell, sandbox) stays with the user's global file.
PROJECT_KEYS = ("code.test_command", "code.lint_command", "code.setup_command", "code.link_dirs")

#: Keys whose string value must be one of a fixed set.
CHOICES: dict[str, tuple[str, ...]] = {
    "rules.parallelize": ("when-possible", "always", "never"),
    "review.approval": ("none", "required"),
    "code.sandbox": ("bwrap", "none"),
    "executors.backend": ("local", "ray"),
}
#: Keys with numeric bounds (inclusive). `models.*.x` stands for every role's table. Every
#: number key has one (a test checks): no value may overflow a float or SQLite's INTEGER.
BOUNDS: dict[str, tuple[float, float]] = {
    "server.port": (0, 65535),
    "server.max_body_bytes": (1024, 1 << 30),
    "server.header_timeout_s": (0.1, 3600),
    "server.body_timeout_s": (0.1, 3600),
    "server.max_connections": (1, 1_000_000),
    "server.stream_send_timeout_s": (0.1, 3600),
    "store.lease_s": (3, 3600),
    "limits.max_goal_chars": (1, 10_000_000),
    "limits.max_context_chars": (0, 100_000_000),
    "limits.max_active_tasks": (1, 1_000_000),
    "limits.max_event_streams": (1, 100_000),
    "models.*.timeout_s": (0.1, 86_400),
    "models.*.max_retries": (0, 20),
    "models.*.max_repairs": (0, 10),
    "code.max_steps": (1, 500),
    "code.fix_max_steps": (1, 500),
    "code.merge_max_steps": (1, 500),
    "code.command_timeout_s": (1, 86_400),
    "code.setup_timeout_s": (1, 86_400),
    "code.max_output_bytes": (1000, 10_000_000),
    "code.stream_time_s": (10, 604_800),
    "code.max_tree_paths": (10, 100_000),
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
    "attachments.max_count": (0, 1000),
    "attachments.max_bytes": (1, 1 << 30),
    "attachments.max_task_bytes": (1, 1 << 30),
    "attachments.pdf_max_pages": (1, 100_000),
    "attachments.pdf_max_rendered_pages": (0, 1000),
    "attachments.pdf_render_dpi": (36, 300),
    "attachments.table_max_rows": (1, 1_000_000),
    "attachments.table_max_cells": (1, 100_000_000),
    "attachments.text_max_chars": (1000, 100_000_000),
    "attachments.read_timeout_s": (1, 3600),
    "executors.ray_stream_cpus": (0.01, 1024),
    "executors.ray_stream_memory_mb": (16, 1 << 20),
    "mcp.tool_wait_s": (1, 600),
    "a2a.send_wait_s": (1, 600),
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
    "code.link_dirs": (
        r"(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\x00]*\S[^\x00]*",
        "paths relative to the repository root, without '..'",
    ),
    "code.secret_globs": (r".*\S.*", "non-blank gitignore-like globs"),
}
#: Values never echoed in an error message (someone may paste the key itself there).
SECRET_KEYS = {"models.*.api_key_env"}
#: List keys whose items are lists of strings rather than strings.
NESTED_LISTS = {"rules.coupled"}
#: (a, b): a must not exceed b in the effective configuration.
ORDERED: tuple[tuple[str, str], ...] = (
    ("concurrency.floor", "concurrency.ceiling"),
    ("concurrency.soft", "concurrency.hard"),
    ("attachments.max_bytes", "attachments.max_task_bytes"),
)
#: Keys (or `table.` prefixes) a running daemon reads only at start: a change to them is
#: written, and takes effect at the next `tierd serve`. `concurrency.ceiling` is applied at once.
RESTART_KEYS = ("server.", "store.", "concurrency.", "executors.")
LIVE_KEYS = ("concurrency.ceiling",)


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
    """Whether a project's `.tierd.toml` may set `key` (`PROJECT_SECTIONS`, `PROJECT_KEYS`)."""
    return key.split(".", 1)[0] in PROJECT_SECTIONS or key in PROJECT_KEYS


def load_defaults() -> dict[str, Any]:
    """The shipped defaults, as dotted keys: the schema every layer is checked against."""
    path = shipped_config_dir() / "default.toml"
    with path.open("rb") as f:
        return flatten(tomllib.load(f))


def is_table(key: str, defaults: dict[str, Any]) -> bool:
    """Whether `key` names a table of the defaults (`rules`) rather than a value."""
    return any(k.startswith(key + ".") for k in defaults)


def unknown_key(key: str, defaults: dict[str, Any]) -> ConfigError:
    """The error for a key the defaults do not have, with the closest hint found."""
    if is_table(key, defaults):
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
    elif section and is_table(section, defaults):
        known = sorted(k for k in defaults if k.startswith(section + "."))
        hint = f"; known keys in [{section}]: {', '.join(known)}"
    elif "." in key and not is_table(key.split(".", 1)[0], defaults):
        tables = sorted({k.split(".", 1)[0] for k in defaults})
        hint = f"; the tables are: {', '.join(tables)}"
    return ConfigError(f"unknown key '{key}'{hint}", key=key)
