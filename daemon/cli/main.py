"""The `tierd` command line.

Client commands (submit, ls, show, watch, answer, approve, cancel, status, config, rules) talk
to a running daemon through `client.py`, which is built on the standard library: they import
neither litellm nor langgraph (nor httpx), so they start fast. Only `serve`, `simulate`, `demo`
and `bench` load the engine. Every command that prints data takes `--json` and then prints
only JSON on stdout; messages and warnings always go to stderr.

Exit codes:
    0    success
    1    the daemon refused the request (unknown task, a state that does not allow it, no
         model or API key configured, ...), or the task failed or was canceled (`watch`,
         `submit --watch`, `demo`)
    2    bad arguments or configuration (argparse errors, an unreadable --context-file, a
         config key or value tierd does not accept)
    3    no daemon running for this home, or it does not answer (`serve`: one already runs)
    4    the task is waiting for a human: a question to answer or a result to approve
         (`watch`, `submit --watch`)
    130  interrupted (Ctrl-C); a task keeps running in the daemon
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_NEEDS_HUMAN = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
#: JSON-RPC codes the CLI words specially (daemon/errors.py).
INVALID_PARAMS, NOT_CONFIGURED = -32602, -32003
TASK_STATES = (
    "queued",
    "planning",
    "running",
    "reviewing",
    "merging",
    "input_required",
    "awaiting_approval",
    "completed",
    "failed",
    "canceled",
)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _err(message: str) -> None:
    print(f"tierd: {message}", file=sys.stderr)


def _client() -> Any:
    from daemon.cli.client import Client

    client = Client.discover()
    if client.version_mismatch:
        _err(f"warning: {client.version_mismatch}")
    return client


def _console() -> Any:
    from rich.console import Console

    return Console()


# --- daemon-side commands -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.api.server import ServeOptions, serve

    code = serve(
        ServeOptions(
            host=args.host, port=args.port, allow_remote=args.allow_remote, log_level=args.log_level
        )
    )
    if code == 0:
        # A clean stop has closed the store, removed daemon.json and released the lock.
        # Tearing down the interpreter after that (litellm's and langgraph's module graphs)
        # takes seconds of CPU for nothing, and callers wait on our exit: skip it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return code


def cmd_simulate(args: argparse.Namespace) -> int:
    from daemon.tools.simulator.server import run_simulator_cli

    try:
        run_simulator_cli(args.port, args.scenario, host=args.host, scale=args.scale)
    except FileNotFoundError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _err(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.tools.demo import run_demo

    return run_demo(as_json=args.json, scale=args.scale)


def cmd_bench(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.tools.bench.run import run_bench

    return int(run_bench(quick=args.quick, json_path=args.json))


# --- client commands ------------------------------------------------------------------------


def _read_context(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    return Path(path).read_text(encoding="utf-8")


def cmd_submit(args: argparse.Namespace) -> int:
    context = ""
    if args.context_file:
        try:
            context = _read_context(args.context_file)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            _err(f"cannot read --context-file {args.context_file}: {reason}")
            return EXIT_USAGE
    options: dict[str, Any] = {}
    if args.project_dir:
        project = Path(args.project_dir).expanduser().resolve()
        if not project.is_dir():
            _err(f"--project-dir: no such directory: {project}")
            return EXIT_USAGE
        options["project_dir"] = str(project)
    if args.approval:
        options["approval"] = "required"
    if args.parallelize:
        options["parallelize"] = args.parallelize
    if args.max_streams:
        options["max_streams"] = args.max_streams
    with _client() as client:
        out = client.submit(args.goal, context, options, idempotency_key=args.idempotency_key)
        if args.watch:
            print(f"submitted {out['task_id']}", file=sys.stderr)
            return _watch(client, out["task_id"], as_json=args.json)
    if args.json:
        _print_json(out)
    else:
        print(out["task_id"])
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.list(state=args.state, limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json(out)
        return EXIT_OK
    if not out["tasks"]:
        print("no tasks" + (f" in state {args.state}" if args.state else ""), file=sys.stderr)
        return EXIT_OK
    import time

    from rich.table import Table
    from rich.text import Text

    from daemon.cli.views import STYLE

    table = Table("id", "state", "submitted", "goal", box=None, header_style="dim")
    for t in out["tasks"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created_at"]))
        table.add_row(
            t["id"],
            Text(t["state"], style=STYLE.get(t["state"], "")),
            when,
            Text(t["goal"].splitlines()[0] if t["goal"] else "", no_wrap=True, overflow="ellipsis"),
        )
    _console().print(table)
    if out.get("next_cursor"):
        print(f"more: tierd ls --cursor {out['next_cursor']}", file=sys.stderr)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _client() as client:
        task = client.get(args.task_id)
    if args.json:
        _print_json(task)
        return EXIT_OK
    from daemon.cli.views import print_task

    print_task(task, _console())
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    with _client() as client:
        return _watch(client, args.task_id, as_json=args.json)


def _watch(client: Any, task_id: str, *, as_json: bool) -> int:
    from daemon.cli.views import watch_task

    console = None if as_json else _console()
    task = watch_task(client, task_id, quiet=as_json, console=console)
    if as_json:
        _print_json(task)
    state = task["state"]
    if not as_json:
        if state == "completed":
            print(
                f"completed: `tierd show {task_id}` prints the result and the report",
                file=sys.stderr,
            )
        elif state in {"failed", "canceled"}:
            print(f"{state}: {task.get('error') or ''}".rstrip(": "), file=sys.stderr)
    if state == "completed":
        return EXIT_OK
    if state in {"input_required", "awaiting_approval"}:
        return EXIT_NEEDS_HUMAN
    return EXIT_ERROR


def cmd_answer(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.answer(args.task_id, {args.question_id: args.text})
    if args.json:
        _print_json(out)
    else:
        print(f"answered {', '.join(out['answered'])}; task {args.task_id} goes on")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    decision = "reject" if args.reject else "approve"
    with _client() as client:
        out = client.approve(args.task_id, decision, args.comment)
    if args.json:
        _print_json(out)
    else:
        print(f"{'rejected' if args.reject else 'approved'} {args.task_id}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.cancel(args.task_id)
    if args.json:
        _print_json(out)
    else:
        print(f"canceled {args.task_id}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.status()
        url = client.url
    if args.json:
        _print_json({**out, "url": url})
        return EXIT_OK
    c = out.get("concurrency") or {}
    busy = {k: v for k, v in out["tasks"].items() if v}
    print(f"tierd {out['version']} at {url} (pid {out['pid']}, up {out['uptime_s']:.0f}s)")
    print(f"store: {out['store']}")
    print("tasks: " + (", ".join(f"{v} {k}" for k, v in busy.items()) or "none"))
    if c:
        print(
            f"agents: {c.get('in_flight', 0)} running, {c.get('waiting', 0)} waiting, "
            f"limit {c.get('limit')} of ceiling {c.get('ceiling')}"
            + (f" ({c['reason']})" if c.get("reason") else "")
        )
    return EXIT_OK


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
    args: argparse.Namespace, key: str, value: Any, applied: bool, config_file: Path
) -> None:
    if args.json:
        _print_json({"key": key, "value": value, "file": str(config_file), "applied": applied})
        return
    print(f"{key} = {json.dumps(value)}  (written to {config_file})")
    print(
        "the running daemon applied it"
        if applied
        else "no daemon running: the next `tierd serve` reads it",
        file=sys.stderr,
    )


def cmd_config(args: argparse.Namespace) -> int:
    from daemon.cli.client import ApiError
    from daemon.config.layers import (
        ConfigError,
        format_show,
        load_config,
        parse_text_value,
        project_layer,
    )
    from daemon.home.paths import resolve_homes

    homes = resolve_homes()
    try:
        config = load_config(homes.config_file)
        if args.action in {"show", "get"} and args.project_dir:
            layer = project_layer(
                str(Path(args.project_dir).expanduser().resolve()), config.defaults
            )
            if layer:
                config = config.with_layer(layer)
        if args.action == "show":
            if args.json:
                _print_json({k: {"value": v, "source": src} for k, v, src in config.rows()})
            else:
                print(format_show(config), end="")
            return EXIT_OK
        if args.action == "get":
            value = config.get(args.key)
            if args.json:
                _print_json(value)
            else:
                print(json.dumps(value) if not isinstance(value, str) else value)
            return EXIT_OK
        value = parse_text_value(args.key, args.value, config.defaults)
        applied = _set_value(args.key, value, config.defaults, homes.config_file)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ApiError as exc:  # the daemon refused the value (e.g. a ceiling it cannot apply)
        _err(exc.message)
        return EXIT_USAGE
    _config_done(args, args.key, value, applied, homes.config_file)
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from daemon.cli.client import ApiError
    from daemon.config.layers import ConfigError, add_to_user_list, load_config, set_user_value
    from daemon.home.paths import resolve_homes

    homes = resolve_homes()
    try:
        config = load_config(homes.config_file)
        if args.action == "list":
            rules = config.get("rules")
            if args.json:
                _print_json(rules)
                return EXIT_OK
            print(f"parallelize: {rules['parallelize']}")
            for i, group in enumerate(rules["coupled"], 1):
                print(f"coupled {i}: {' + '.join(group)}")
            for i, text in enumerate(rules["instructions"], 1):
                print(f"rule {i}: {text}")
            if not rules["coupled"] and not rules["instructions"]:
                print(
                    "no coupled areas or instructions yet (tierd rules add / couple)",
                    file=sys.stderr,
                )
            return EXIT_OK
        if args.action in {"add", "couple"}:
            if args.action == "add":
                key, item = "rules.instructions", args.text
                if not item.strip():
                    _err("`rules add` needs the text of a rule")
                    return EXIT_USAGE
            else:
                key, item = "rules.coupled", list(args.areas)
                if len(set(item)) < 2:
                    _err("`rules couple` needs at least two different areas, e.g. auth/ db/")
                    return EXIT_USAGE
            # Appended under the config file's lock: two `rules add` at once both land.
            value, changed = add_to_user_list(homes.config_file, key, item, config.defaults)
            if not changed:
                print(f"{key} already has {json.dumps(item)}", file=sys.stderr)
        else:  # remove
            key = "rules.coupled" if args.coupled else "rules.instructions"
            items = config.get(key)
            if not 1 <= args.number <= len(items):
                what = "coupled group" if args.coupled else "rule"
                _err(
                    f"no {what} number {args.number} (there are {len(items)}; "
                    "see `tierd rules list`)"
                )
                return EXIT_USAGE
            value = [x for i, x in enumerate(items, 1) if i != args.number]
            set_user_value(homes.config_file, key, value, config.defaults)
        applied = _tell_daemon(key, homes.config_file)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ApiError as exc:
        _err(f"the file is updated, but the running daemon refused it: {exc.message}")
        return EXIT_USAGE
    _config_done(args, key, value, applied, homes.config_file)
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from daemon import __version__

    p = argparse.ArgumentParser(
        prog="tierd",
        description="Run teams of AI agents in parallel: a premium orchestrator "
        "and planner, cheap executors. Try `tierd demo` (no API key needed).",
        epilog="exit codes: 0 ok; 1 refused by the daemon, or the task failed; 2 bad arguments "
        "or configuration; 3 no daemon running; 4 the task waits for you; 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"tierd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def json_flag(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--json", action="store_true", help="print JSON (only) on stdout")
        return sp

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str, with_json: bool = True
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return json_flag(sp) if with_json else sp

    sp = add("serve", cmd_serve, "run the daemon in the foreground", with_json=False)
    sp.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    sp.add_argument(
        "--port", type=_port, help="port (default: server.port, 8737; 0 picks a free one)"
    )
    sp.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    sp.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )

    sp = add("submit", cmd_submit, "submit a task and print its id")
    sp.add_argument("goal", help="what the task should achieve")
    sp.add_argument(
        "--context-file",
        metavar="FILE",
        help="file whose text is the task's context ('-' reads stdin)",
    )
    sp.add_argument("--project-dir", metavar="DIR", help="project root (its .tierd.toml applies)")
    sp.add_argument("--approval", action="store_true", help="wait for approval of the result")
    sp.add_argument("--parallelize", choices=["when-possible", "always", "never"])
    sp.add_argument(
        "--max-streams", type=_positive_int, metavar="N", help="most streams the plan may have"
    )
    sp.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="retry-safe submit: a second submit with the same KEY returns the first task",
    )
    sp.add_argument(
        "--watch", action="store_true", help="follow the task live (exit code as for `watch`)"
    )

    sp = add("ls", cmd_ls, "list tasks, newest first")
    sp.add_argument("--state", choices=TASK_STATES)
    sp.add_argument("--limit", type=_positive_int, default=50)
    sp.add_argument("--cursor", help="continue a listing (from the previous page)")
    add("show", cmd_show, "show a task with its streams, verdicts, result and report").add_argument(
        "task_id"
    )
    add(
        "watch",
        cmd_watch,
        "follow a task live until it ends or waits for you "
        "(exit 0 completed, 1 failed or canceled, 4 waits for you)",
    ).add_argument("task_id")
    sp = add("answer", cmd_answer, "answer a task's question")
    sp.add_argument("task_id")
    sp.add_argument("question_id")
    sp.add_argument("text")
    sp = add("approve", cmd_approve, "approve (or --reject) a result awaiting approval")
    sp.add_argument("task_id")
    sp.add_argument("--reject", action="store_true", help="send the result back")
    sp.add_argument("--comment", help="what to change (with --reject)")
    add("cancel", cmd_cancel, "cancel a task").add_argument("task_id")
    add("status", cmd_status, "the daemon's status: version, tasks, agents")

    sp = add("config", cmd_config, "show, get or set configuration", with_json=False)
    csub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    cs = json_flag(csub.add_parser("show", help="effective configuration with each value's layer"))
    cs.add_argument("--project-dir", metavar="DIR", help="include this project's .tierd.toml")
    cs = json_flag(csub.add_parser("get", help="one key, or a section (e.g. models.planner)"))
    cs.add_argument("key")
    cs.add_argument("--project-dir", metavar="DIR", help="include this project's .tierd.toml")
    cs = json_flag(
        csub.add_parser(
            "set", help="set a key in your global config file (a running daemon applies it)"
        )
    )
    cs.add_argument("key")
    cs.add_argument("value", help='the value; lists in TOML syntax, e.g. \'["a", "b"]\'')

    sp = add(
        "rules", cmd_rules, "global rules: list, add an instruction, couple areas", with_json=False
    )
    rsub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    json_flag(rsub.add_parser("list", help="the rules every task obeys"))
    json_flag(
        rsub.add_parser("add", help="add an instruction for every planner and executor")
    ).add_argument("text")
    json_flag(
        rsub.add_parser("couple", help="areas never to split across streams, e.g. auth/ db/")
    ).add_argument("areas", nargs="+")
    rs = json_flag(
        rsub.add_parser(
            "remove",
            help="remove rule N (or coupled group N with --coupled), numbered as in `rules list`",
        )
    )
    rs.add_argument("number", type=_positive_int)
    rs.add_argument("--coupled", action="store_true")

    sp = add("simulate", cmd_simulate, "run the OpenAI-compatible model simulator", with_json=False)
    sp.add_argument("--port", type=_port, default=8740, help="port (0 picks a free one)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--scenario", help="scenario file or shipped name (default: sales_lead)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply all latencies")

    sp = add(
        "demo", cmd_demo, "watch a simulated team work on a sales lead (no API key, no network)"
    )
    sp.add_argument(
        "--scale",
        type=_positive_float,
        default=0.3,
        help="multiply the simulated latencies (default 0.3)",
    )

    sp = add(
        "bench", cmd_bench, "measure tierd against baselines on the simulator", with_json=False
    )
    sp.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    sp.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    return p


def _api_error(exc: Any) -> None:
    """Word a refusal from the daemon so the user knows what to do next."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == NOT_CONFIGURED:
        _err(f"the task was not submitted: {exc.message}")
        if data.get("env"):
            print(
                f"  The daemon reads API keys from its own environment: stop it, then start "
                f"it again with the variable set, e.g. `{data['env']}=... tierd serve`.",
                file=sys.stderr,
            )
        return
    if exc.code == INVALID_PARAMS and isinstance(exc.data, list):
        fields = "; ".join(
            f"{d.get('field', '?')}: {d.get('message', '')}"
            for d in exc.data
            if isinstance(d, dict)
        )
        _err(f"{exc.message}" + (f" ({fields})" if fields and fields not in exc.message else ""))
        return
    _err(exc.message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from daemon.cli.client import ApiError, DaemonNotRunning

    try:
        return int(args.fn(args))
    except DaemonNotRunning as exc:
        _err(str(exc))
        return EXIT_NO_DAEMON
    except ApiError as exc:
        _api_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if args.command == "watch" or getattr(args, "watch", False):
            # Tasks run in the daemon: leaving the CLI never affects them.
            print("\ntierd: stopped watching; the task goes on in the daemon", file=sys.stderr)
        else:
            print("\ntierd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `tierd ls | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
