"""The `tierd` command line.

Client commands talk to a running daemon through `client.py` and import neither litellm nor
langgraph, so they start fast; only `serve`, `simulate`, `demo` and `bench` load the engine.

Exit codes: 0 success; 1 the daemon answered with an error, or the task failed or was
canceled; 2 bad arguments or configuration; 3 no daemon running (or one already running, for
`serve`); 4 the task is waiting for a human (`watch`, `submit --watch`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_NEEDS_HUMAN = 0, 1, 2, 3, 4


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _client() -> Any:
    from .client import Client

    client = Client.discover()
    if client.version_mismatch:
        print(f"tierd: warning: {client.version_mismatch}", file=sys.stderr)
    return client


# --- daemon-side commands -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from .server import ServeOptions, serve

    return serve(ServeOptions(host=args.host, port=args.port, allow_remote=args.allow_remote,
                              log_level=args.log_level))


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import run_simulator_cli

    run_simulator_cli(args.port, args.scenario, host=args.host, scale=args.scale)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(as_json=args.json, scale=args.scale)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(quick=args.quick, json_path=args.json)


# --- client commands ------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    context = ""
    if args.context_file:
        try:
            context = Path(args.context_file).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"tierd: cannot read --context-file: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    options: dict[str, Any] = {}
    if args.project_dir:
        options["project_dir"] = str(Path(args.project_dir).resolve())
    if args.approval:
        options["approval"] = "required"
    if args.parallelize:
        options["parallelize"] = args.parallelize
    with _client() as client:
        out = client.submit(args.goal, context, options)
        if args.watch:
            if not args.json:
                print(f"submitted {out['task_id']}", file=sys.stderr)
            return _watch(client, out["task_id"], as_json=args.json)
    if args.json:
        _print_json(out)
    else:
        print(out["task_id"])
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.list(state=args.state, limit=args.limit)
    if args.json:
        _print_json(out)
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "state", "goal", box=None)
    for t in out["tasks"]:
        table.add_row(t["id"], t["state"], t["goal"][:70])
    Console().print(table)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _client() as client:
        task = client.get(args.task_id)
    if args.json:
        _print_json(task)
        return EXIT_OK
    from .views import print_task

    print_task(task)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    with _client() as client:
        return _watch(client, args.task_id, as_json=args.json)


def _watch(client: Any, task_id: str, *, as_json: bool) -> int:
    from .views import watch_task

    task = watch_task(client, task_id, quiet=as_json)
    if as_json:
        _print_json(task)
    state = task["state"]
    if state == "completed":
        return EXIT_OK
    if state in {"input_required", "awaiting_approval"}:
        return EXIT_NEEDS_HUMAN
    return EXIT_ERROR


def cmd_answer(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.answer(args.task_id, {args.question_id: args.text})
    _print_json(out) if args.json else print(f"answered {', '.join(out['answered'])}")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    decision = "reject" if args.reject else "approve"
    with _client() as client:
        out = client.approve(args.task_id, decision, args.comment)
    _print_json(out) if args.json else print(f"{decision}d {args.task_id}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.cancel(args.task_id)
    _print_json(out) if args.json else print(f"canceled {args.task_id}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _client() as client:
        out = client.status()
    if args.json:
        _print_json(out)
        return EXIT_OK
    c = out.get("concurrency", {})
    busy = {k: v for k, v in out["tasks"].items() if v}
    print(f"tierd {out['version']} pid {out['pid']} up {out['uptime_s']:.0f}s "
          f"store {out['store']}")
    print("tasks: " + (", ".join(f"{k} {v}" for k, v in busy.items()) or "none"))
    if c:
        print(f"agents: {c.get('in_flight', 0)} running, {c.get('waiting', 0)} waiting, "
              f"limit {c.get('limit')} of ceiling {c.get('ceiling')} ({c.get('reason', '')})")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config, parse_text_value, set_user_value
    from .homes import resolve_homes

    homes = resolve_homes()
    config = load_config(homes.config_file)
    if args.action == "show":
        rows = {k: {"value": v, "source": config.source_of(k)}
                for k, v in sorted(config.values.items())}
        if args.json:
            _print_json(rows)
        else:
            for k, r in rows.items():
                print(f"{k} = {json.dumps(r['value'])}    # {r['source']}")
        return EXIT_OK
    if args.action == "get":
        try:
            value = config.get(args.key)
        except ConfigError as exc:
            print(f"tierd: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _print_json(value) if args.json else print(json.dumps(value))
        return EXIT_OK
    # set: write the file directly, then tell a running daemon (if any) to reload.
    try:
        value = parse_text_value(args.key, args.value, config.defaults)
        set_user_value(homes.config_file, args.key, value, config.defaults)
    except ConfigError as exc:
        print(f"tierd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _notify_daemon(args.key, value)
    print(f"{args.key} = {json.dumps(value)}  (written to {homes.config_file})")
    return EXIT_OK


def _notify_daemon(key: str, value: Any) -> None:
    from .client import ApiError, Client, DaemonNotRunning

    try:
        with Client.discover() as client:
            client.config_set(key, value)
    except (DaemonNotRunning, ApiError):
        pass  # no daemon: the file is what the next start reads


def cmd_rules(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config, set_user_value
    from .homes import resolve_homes

    homes = resolve_homes()
    config = load_config(homes.config_file)
    if args.action == "list":
        rules = config.get("rules")
        _print_json(rules) if args.json else print(
            f"parallelize = {rules['parallelize']}\n"
            + "".join(f"coupled: {' + '.join(g)}\n" for g in rules["coupled"])
            + "".join(f"rule: {r}\n" for r in rules["instructions"]), end="")
        return EXIT_OK
    if args.action == "add":
        key, value = "rules.instructions", [*config.get("rules.instructions"), args.text]
    else:
        if len(args.areas) < 2:
            print("tierd: `rules couple` needs at least two areas, e.g. auth/ db/",
                  file=sys.stderr)
            return EXIT_USAGE
        key, value = "rules.coupled", [*config.get("rules.coupled"), list(args.areas)]
    try:
        set_user_value(homes.config_file, key, value, config.defaults)
    except ConfigError as exc:
        print(f"tierd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _notify_daemon(key, value)
    print(f"{key} updated in {homes.config_file}")
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="tierd", description="Run teams of AI agents in parallel: "
                                "a premium orchestrator and planner, cheap executors.")
    p.add_argument("--version", action="version", version=f"tierd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            json_flag: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON for scripts")
        return sp

    sp = add("serve", cmd_serve, "run the daemon in the foreground", json_flag=False)
    sp.add_argument("--host", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, help="port (default 8737; 0 picks a free one)")
    sp.add_argument("--allow-remote", action="store_true",
                    help="allow binding a non-loopback address")
    sp.add_argument("--log-level", default="warning",
                    choices=["critical", "error", "warning", "info", "debug"])

    sp = add("submit", cmd_submit, "submit a task", json_flag=True)
    sp.add_argument("goal")
    sp.add_argument("--context-file", help="file whose text is the task's context")
    sp.add_argument("--project-dir", help="project root (its .tierd.toml applies)")
    sp.add_argument("--approval", action="store_true", help="wait for approval of the result")
    sp.add_argument("--parallelize", choices=["when-possible", "always", "never"])
    sp.add_argument("--watch", action="store_true", help="follow the task live")

    sp = add("ls", cmd_ls, "list tasks")
    sp.add_argument("--state")
    sp.add_argument("--limit", type=int, default=50)
    add("show", cmd_show, "show a task with its streams and report").add_argument("task_id")
    add("watch", cmd_watch, "follow a task live").add_argument("task_id")
    sp = add("answer", cmd_answer, "answer a task's question")
    sp.add_argument("task_id")
    sp.add_argument("question_id")
    sp.add_argument("text")
    sp = add("approve", cmd_approve, "approve (or --reject) a result awaiting approval")
    sp.add_argument("task_id")
    sp.add_argument("--reject", action="store_true")
    sp.add_argument("--comment")
    add("cancel", cmd_cancel, "cancel a task").add_argument("task_id")
    add("status", cmd_status, "the daemon's status")

    sp = add("config", cmd_config, "show, get or set configuration")
    csub = sp.add_subparsers(dest="action", required=True)
    csub.add_parser("show", help="effective configuration with each value's layer")
    csub.add_parser("get").add_argument("key")
    cs = csub.add_parser("set", help="set a key in your global config file")
    cs.add_argument("key")
    cs.add_argument("value")

    sp = add("rules", cmd_rules, "global rules: list, add an instruction, couple areas")
    rsub = sp.add_subparsers(dest="action", required=True)
    rsub.add_parser("list")
    rsub.add_parser("add").add_argument("text")
    rsub.add_parser("couple").add_argument("areas", nargs="+")

    sp = add("simulate", cmd_simulate, "run the OpenAI-compatible model simulator",
             json_flag=False)
    sp.add_argument("--port", type=int, default=8740)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--scenario", help="scenario file (default: the sales-lead example)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply all latencies")

    sp = add("demo", cmd_demo, "watch a simulated team work (no API key, no network)")
    sp.add_argument("--scale", type=float, default=0.5, help="multiply simulated latencies")

    sp = add("bench", cmd_bench, "measure tierd against baselines on the simulator",
             json_flag=False)
    sp.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    sp.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .client import ApiError, DaemonNotRunning

    try:
        return int(args.fn(args))
    except DaemonNotRunning as exc:
        print(f"tierd: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except ApiError as exc:
        detail = ""
        if isinstance(exc.data, (dict, list)) and exc.data:
            detail = f" ({json.dumps(exc.data)})"
        print(f"tierd: {exc.message}{detail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Tasks run in the daemon: leaving the CLI never affects them.
        print("\ntierd: stopped watching; the task goes on in the daemon", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
