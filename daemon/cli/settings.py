"""The commands that read and change configuration: `config show|get|set|models` and
`rules [list]|add|couple|remove`.

They work on the global config file whether or not a daemon runs; a running daemon is handed
each change (it checks and applies it), so it need not be restarted for one, except for the
keys it reads only at start (`server.*`, `store.*`, `concurrency.*` but the ceiling:
`daemon.config.schema.needs_restart`), which the messages say.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.cli.output import EXIT_OK, EXIT_USAGE, err, print_json
from daemon.cli.terminal import clean

if TYPE_CHECKING:
    from daemon.config.layers import Config

__all__ = ["cmd_config", "cmd_rules"]


class _Refused(Exception):
    """The arguments cannot be used: the message says why (exit code 2)."""


def _set_value(key: str, value: Any, defaults: dict[str, Any], config_file: Path) -> bool:
    """Set a key through the running daemon (it checks, applies and writes it), or write the
    file directly when none runs. Returns whether a running daemon applied it."""
    from daemon.cli.client import Client, DaemonNotRunning
    from daemon.config.layers import set_user_value

    try:
        with Client.discover() as client:
            client.config_set(key, value)
        return True
    except DaemonNotRunning:
        set_user_value(config_file, key, value, defaults)
        return False


def _tell_daemon(key: str, config_file: Path) -> bool:
    """After the file changed: hand a running daemon the key's value as the file now has it.
    Returns whether a daemon applied it (False: none runs, the next start reads the file)."""
    from daemon.cli.client import Client, DaemonNotRunning
    from daemon.config.layers import load_config

    try:
        with Client.discover() as client:
            client.config_set(key, load_config(config_file).get(key))
        return True
    except DaemonNotRunning:
        return False


def _config_done(
    args: argparse.Namespace, key: str, value: Any, running: bool, config_file: Path
) -> None:
    """Say what was written and whether it is in effect. `running`: a running daemon took
    it; it applies it at once unless it reads the key only at its start."""
    from daemon.config.layers import needs_restart

    restart = running and needs_restart(key)
    applied = running and not restart
    if args.json:
        out = {"key": key, "value": value, "file": str(config_file), "applied": applied}
        print_json({**out, "restart_needed": True} if restart else out)
        return
    print(f"{key} = {json.dumps(value)}  (written to {config_file})")
    print(_effect(applied, restart), file=sys.stderr)


def _effect(applied: bool, restart: bool) -> str:
    if applied:
        return "the running daemon applied it"
    if restart:
        return (
            "the running daemon reads this at its start: it applies after "
            "`tierd stop` and `tierd serve`"
        )
    return "no daemon running: the next `tierd serve` reads it"


# --- config -----------------------------------------------------------------------------------


def _config_read(args: argparse.Namespace, config: Config) -> int:
    """`config show` and `config get` (with the project's layer when --project-dir is given)."""
    from daemon.config.layers import format_show, project_layer

    if args.project_dir:
        layer = project_layer(str(Path(args.project_dir).expanduser().resolve()), config.defaults)
        if layer:
            config = config.with_layer(layer)
    if args.action == "show":
        if args.json:
            print_json({k: {"value": v, "source": src} for k, v, src in config.rows()})
        else:
            print(clean(format_show(config)), end="")
        return EXIT_OK
    value = config.get(args.key)
    if args.json:
        print_json(value)
    else:
        print(json.dumps(value) if not isinstance(value, str) else clean(value))
    return EXIT_OK


#: `config models`: the premium roles, and every role.
PREMIUM_ROLES = ("planner", "orchestrator")
ALL_ROLES = ("planner", "orchestrator", "executor")


def _models_values(args: argparse.Namespace) -> dict[str, Any]:
    """The keys `config models` sets: the servers and keys first, then the models, so a
    running daemon checks each model with its server already set."""
    values: dict[str, Any] = {}
    for role in ALL_ROLES:
        if args.api_base is not None:
            values[f"models.{role}.api_base"] = args.api_base
        if args.api_key_env is not None:
            values[f"models.{role}.api_key_env"] = args.api_key_env
    for role in PREMIUM_ROLES:
        if args.premium:
            values[f"models.{role}.model"] = args.premium
    if args.cheap:
        values["models.executor.model"] = args.cheap
    if not values:
        raise _Refused("`config models` needs --api-base, --premium, --cheap or --api-key-env")
    return values


def _config_models(args: argparse.Namespace, config: Config, config_file: Path) -> int:
    """`config models`: every role's keys in one write of the file, then handed to a running
    daemon (each key as the file now has it: the daemon checks the models and applies them;
    the file does not change again)."""
    from daemon.cli.client import ApiError
    from daemon.config.layers import set_user_values

    values = set_user_values(config_file, _models_values(args), config.defaults)
    running = False
    try:
        for key in values:
            running = _tell_daemon(key, config_file)
            if not running:
                break
    except ApiError as exc:
        err(f"the file is updated, but the running daemon refused it: {exc.message}")
        return EXIT_USAGE
    if args.json:
        print_json({"values": values, "file": str(config_file), "applied": running})
        return EXIT_OK
    for key, value in values.items():
        print(clean(f"{key} = {json.dumps(value)}"))
    print(f"(written to {config_file} at once)", file=sys.stderr)
    print(_effect(running, False), file=sys.stderr)
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from daemon.cli.client import ApiError
    from daemon.config.layers import ConfigError, load_config, parse_text_value
    from daemon.home.paths import resolve_homes

    homes = resolve_homes()
    try:
        config = load_config(homes.config_file)
        if args.action in {"show", "get"}:
            return _config_read(args, config)
        if args.action == "models":
            return _config_models(args, config, homes.config_file)
        value = parse_text_value(args.key, args.value, config.defaults)
        applied = _set_value(args.key, value, config.defaults, homes.config_file)
    except (ConfigError, _Refused) as exc:
        err(str(exc))
        return EXIT_USAGE
    except ApiError as exc:  # the daemon refused the value (e.g. a ceiling it cannot apply)
        err(exc.message)
        return EXIT_USAGE
    _config_done(args, args.key, value, applied, homes.config_file)
    return EXIT_OK


# --- rules ------------------------------------------------------------------------------------


def _rules_list(args: argparse.Namespace, config: Config) -> int:
    rules = config.get("rules")
    if getattr(args, "json", False):
        print_json(rules)
        return EXIT_OK
    # A project's config file is anyone's text: shown neutralised, like the daemon's.
    print(clean(f"parallelize: {rules['parallelize']}"))
    for i, group in enumerate(rules["coupled"], 1):
        print(clean(f"coupled {i}: {' + '.join(group)}"))
    for i, text in enumerate(rules["instructions"], 1):
        print(clean(f"rule {i}: {text}"))
    if not rules["coupled"] and not rules["instructions"]:
        print("no coupled areas or instructions yet (tierd rules add / couple)", file=sys.stderr)
    return EXIT_OK


def _rules_append(args: argparse.Namespace, config: Config, config_file: Path) -> tuple[str, Any]:
    """`rules add` and `rules couple`: the key changed and its new value."""
    from daemon.config.layers import add_to_user_list

    item: Any
    if args.action == "add":
        key, item = "rules.instructions", args.text
        if not item.strip():
            raise _Refused("`rules add` needs the text of a rule")
    else:
        key, item = "rules.coupled", list(args.areas)
        if len(set(item)) < 2:
            raise _Refused("`rules couple` needs at least two different areas, e.g. auth/ db/")
    # Appended under the config file's lock: two `rules add` at once both land.
    value, changed = add_to_user_list(config_file, key, item, config.defaults)
    if not changed:
        print(f"{key} already has {json.dumps(item)}", file=sys.stderr)
    return key, value


def _rules_remove(args: argparse.Namespace, config: Config, config_file: Path) -> tuple[str, Any]:
    """`rules remove N [--coupled]`: the key changed and its new value."""
    from daemon.config.layers import set_user_value

    key = "rules.coupled" if args.coupled else "rules.instructions"
    items = config.get(key)
    if not 1 <= args.number <= len(items):
        what = "coupled group" if args.coupled else "rule"
        raise _Refused(
            f"no {what} number {args.number} (there are {len(items)}; see `tierd rules list`)"
        )
    value = [x for i, x in enumerate(items, 1) if i != args.number]
    set_user_value(config_file, key, value, config.defaults)
    return key, value


def cmd_rules(args: argparse.Namespace) -> int:
    from daemon.cli.client import ApiError
    from daemon.config.layers import ConfigError, load_config
    from daemon.home.paths import resolve_homes

    homes = resolve_homes()
    try:
        config = load_config(homes.config_file)
        if args.action in {None, "list"}:  # bare `tierd rules` lists them
            return _rules_list(args, config)
        if args.action in {"add", "couple"}:
            key, value = _rules_append(args, config, homes.config_file)
        else:
            key, value = _rules_remove(args, config, homes.config_file)
        applied = _tell_daemon(key, homes.config_file)
    except _Refused as exc:
        err(str(exc))
        return EXIT_USAGE
    except ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE
    except ApiError as exc:
        err(f"the file is updated, but the running daemon refused it: {exc.message}")
        return EXIT_USAGE
    _config_done(args, key, value, applied, homes.config_file)
    return EXIT_OK
