"""The configuration a task runs with, and whether a task could run with it at all.

A task's configuration is every layer of the daemon's (defaults, global file), the project's
`.tierd.toml` if the task names a project (`options.project_dir`, or else a code task's
repository), and the task's own options last. It is worked out
once, at submit, and stored with the task: a later change of configuration does not change a
task already submitted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from daemon.config.layers import Config, ConfigError, Layer, check_values, project_layer
from daemon.service.errors import InvalidParams, NotConfigured
from daemon.service.params import TaskOptions
from daemon.service.ports import Engine
from roles.models.errors import ModelConfigError

log = logging.getLogger("tierd.service")

ROLES = ("orchestrator", "planner", "executor")
#: The task option that overrides each configuration key.
OPTION_KEYS = {
    "approval": "review.approval",
    "parallelize": "rules.parallelize",
    "coupled": "rules.coupled",
    "instructions": "rules.instructions",
    "max_streams": "plan.max_streams",
}
#: The configuration tables a task keeps with it (the rest is the daemon's own).
TASK_SECTIONS = frozenset({"models", "plan", "review", "rules", "notify", "code"})


def effective_config(config: Config, options: TaskOptions, repo: str | None = None) -> Config:
    """The configuration a task runs with: all layers, the task's own options last.

    `repo`, a code task's checked repository, is its project unless options.project_dir
    names another one."""
    if options.project_dir:
        config = _with_project(config, options.project_dir, "options.project_dir")
    elif repo:
        config = _with_project(config, repo, "repo")
    overrides: dict[str, Any] = {
        key: getattr(options, name)
        for name, key in OPTION_KEYS.items()
        if getattr(options, name) is not None
    }
    if not overrides:
        return config
    try:
        values = check_values(overrides, config.defaults)
    except ConfigError as exc:
        name = next((n for n, k in OPTION_KEYS.items() if k == exc.key), "options")
        raise InvalidParams(
            f"options.{name}: {exc}", {"field": f"options.{name}", "key": exc.key}
        ) from exc
    return config.with_layer(Layer("task", None, values))


def _with_project(config: Config, project_dir: str, field: str) -> Config:
    if not os.path.isdir(project_dir):
        raise InvalidParams(f"{field}: no such directory: {project_dir}", {"field": field})
    try:
        layer = project_layer(project_dir, config.defaults)
    except ConfigError as exc:
        raise InvalidParams(f"{field}: {exc}", {"field": field, "key": exc.key}) from exc
    return config.with_layer(layer) if layer else config


def check_models(config: Config, env: Mapping[str, str]) -> None:
    """Refuse a task that could never run: a role with no model or a missing key."""
    for role in ROLES:
        model = config.get(f"models.{role}.model")
        if not model:
            raise NotConfigured(
                f"no model configured for the {role}: set models.{role}.model "
                f"(e.g. `tierd config set models.{role}.model gpt-5`)",
                {"key": f"models.{role}.model"},
            )
        key_env = config.get(f"models.{role}.api_key_env")
        if key_env and not env.get(key_env):
            raise NotConfigured(
                f"the {role}'s model {model!r} needs an API key: set the environment "
                f"variable {key_env} for the daemon, or change models.{role}.api_key_env "
                f'("" for a local server that needs no key)',
                {"key": f"models.{role}.api_key_env", "env": key_env},
            )


def task_settings(config: Config) -> dict[str, Any]:
    """The values a task stores with it: those of the tables its workflow reads."""
    return {k: v for k, v in config.values.items() if k.split(".")[0] in TASK_SECTIONS}


async def check_routing(engine: Engine, stored: Mapping[str, Any], *, wait: bool) -> list[str]:
    """Refuse models litellm cannot route before any call is paid for; the warnings (a model
    whose price is unknown) for the caller to pass on. Until the engine has loaded (and not
    `wait`), nothing is checked here: the task checks again before its first call."""
    try:
        warnings = await engine.check_models(stored, wait=wait)
    except ModelConfigError as exc:
        data: dict[str, Any] = {"role": exc.role, "model": exc.model}
        if exc.role:
            data["key"] = f"models.{exc.role}.model"
        raise NotConfigured(str(exc), data) from exc
    for warning in warnings or []:
        log.warning("%s", warning)
    return list(warnings or [])
