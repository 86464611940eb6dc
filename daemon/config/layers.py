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

This module is the configuration's front door: the names the rest of tierd uses are importable
from here. Each lives in a module of its own: `schema` (the keys and what each allows),
`checks` (checking values and layers), `toml_files` (reading TOML with lines for messages),
`effective` (layers, the effective values and their provenance), `user_file` (writing the
global file) and `show` (`tierd config show`).
"""

from __future__ import annotations

from daemon.config.checks import check_value, check_values, parse_text_value
from daemon.config.effective import (
    Config,
    Layer,
    load_config,
    project_layer,
    read_layer,
    reload_if_changed,
)
from daemon.config.errors import ConfigError, ConfigNotWritable
from daemon.config.schema import (
    BOUNDS,
    CHOICES,
    LAYERS,
    LIVE_KEYS,
    NESTED_LISTS,
    ORDERED,
    PATTERNS,
    PROJECT_FILE,
    PROJECT_SECTIONS,
    RESTART_KEYS,
    SECRET_KEYS,
    generic_key,
    load_defaults,
    needs_restart,
    project_may_set,
    shipped_config_dir,
)
from daemon.config.show import format_show
from daemon.config.user_file import add_to_user_list, set_user_value, set_user_values

__all__ = [
    "BOUNDS",
    "CHOICES",
    "LAYERS",
    "LIVE_KEYS",
    "NESTED_LISTS",
    "ORDERED",
    "PATTERNS",
    "PROJECT_FILE",
    "PROJECT_SECTIONS",
    "RESTART_KEYS",
    "SECRET_KEYS",
    "Config",
    "ConfigError",
    "ConfigNotWritable",
    "Layer",
    "add_to_user_list",
    "check_value",
    "check_values",
    "format_show",
    "generic_key",
    "load_config",
    "load_defaults",
    "needs_restart",
    "parse_text_value",
    "project_layer",
    "project_may_set",
    "read_layer",
    "reload_if_changed",
    "set_user_value",
    "set_user_values",
    "shipped_config_dir",
]
