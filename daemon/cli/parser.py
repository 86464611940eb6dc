"""The `tierd` argument parser: every command, its arguments and its help.

Each command's function is set as the parser default `fn`; `main.py` runs it. Importing this
module loads only the standard library and the light command modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from daemon import __version__
from daemon.cli import local, settings, tasks

__all__ = ["TASK_STATES", "build_parser"]

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
Command = Callable[[argparse.Namespace], int]


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


def _json_flag(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("--json", action="store_true", help="print JSON (only) on stdout")
    return sp


class _Commands:
    """Adds commands to the parser's sub-parsers."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.sub = sub

    def __call__(
        self, name: str, fn: Command, help_: str, with_json: bool = True
    ) -> argparse.ArgumentParser:
        sp = self.sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return _json_flag(sp) if with_json else sp


def _add_serve(add: _Commands) -> None:
    sp = add("serve", local.cmd_serve, "run the daemon in the foreground", with_json=False)
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


def _add_submit(add: _Commands) -> None:
    sp = add("submit", tasks.cmd_submit, "submit a task and print its id")
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
        "--repo",
        metavar="PATH",
        help="a code task on this git work tree (a relative PATH is taken from here); "
        "the task works in worktrees of its own and never touches yours",
    )
    sp.add_argument(
        "--base", metavar="REF", help="with --repo: the ref to start from (default HEAD)"
    )
    sp.add_argument(
        "--include-uncommitted",
        action="store_true",
        help="with --repo: start from HEAD plus your uncommitted changes (a snapshot; your "
        "index and files stay as they are)",
    )
    sp.add_argument(
        "--watch", action="store_true", help="follow the task live (exit code as for `watch`)"
    )


def _add_task_commands(add: _Commands) -> None:
    sp = add("ls", tasks.cmd_ls, "list tasks, newest first")
    sp.add_argument("--state", choices=TASK_STATES)
    sp.add_argument("--limit", type=_positive_int, default=50)
    sp.add_argument("--cursor", help="continue a listing (from the previous page)")
    add(
        "show", tasks.cmd_show, "show a task with its streams, verdicts, result and report"
    ).add_argument("task_id")
    add(
        "watch",
        tasks.cmd_watch,
        "follow a task live until it ends or waits for you "
        "(exit 0 completed, 1 failed or canceled, 4 waits for you)",
    ).add_argument("task_id")
    sp = add("answer", tasks.cmd_answer, "answer a task's question")
    sp.add_argument("task_id")
    sp.add_argument("question_id")
    sp.add_argument("text")
    sp = add("approve", tasks.cmd_approve, "approve (or --reject) a result awaiting approval")
    sp.add_argument("task_id")
    sp.add_argument("--reject", action="store_true", help="send the result back")
    sp.add_argument("--comment", help="what to change (with --reject)")
    add("cancel", tasks.cmd_cancel, "cancel a task").add_argument("task_id")
    add("status", tasks.cmd_status, "the daemon's status: version, tasks, agents")
    sp = add(
        "open",
        tasks.cmd_open,
        "sign a browser in to the dashboard: print (and open) a one-time link, valid 60 s",
    )
    sp.add_argument("--no-browser", action="store_true", help="only print the link")


def _add_config(add: _Commands) -> None:
    sp = add("config", settings.cmd_config, "show, get or set configuration", with_json=False)
    csub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    cs = _json_flag(csub.add_parser("show", help="effective configuration with each value's layer"))
    cs.add_argument("--project-dir", metavar="DIR", help="include this project's .tierd.toml")
    cs = _json_flag(csub.add_parser("get", help="one key, or a section (e.g. models.planner)"))
    cs.add_argument("key")
    cs.add_argument("--project-dir", metavar="DIR", help="include this project's .tierd.toml")
    cs = _json_flag(
        csub.add_parser(
            "set", help="set a key in your global config file (a running daemon applies it)"
        )
    )
    cs.add_argument("key")
    cs.add_argument("value", help='the value; lists in TOML syntax, e.g. \'["a", "b"]\'')


def _add_rules(add: _Commands) -> None:
    sp = add(
        "rules",
        settings.cmd_rules,
        "global rules: list, add an instruction, couple areas",
        with_json=False,
    )
    rsub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    _json_flag(rsub.add_parser("list", help="the rules every task obeys"))
    _json_flag(
        rsub.add_parser("add", help="add an instruction for every planner and executor")
    ).add_argument("text")
    _json_flag(
        rsub.add_parser("couple", help="areas never to split across streams, e.g. auth/ db/")
    ).add_argument("areas", nargs="+")
    rs = _json_flag(
        rsub.add_parser(
            "remove",
            help="remove rule N (or coupled group N with --coupled), numbered as in `rules list`",
        )
    )
    rs.add_argument("number", type=_positive_int)
    rs.add_argument("--coupled", action="store_true")


def _add_tools(add: _Commands) -> None:
    sp = add(
        "simulate", local.cmd_simulate, "run the OpenAI-compatible model simulator", with_json=False
    )
    sp.add_argument("--port", type=_port, default=8740, help="port (0 picks a free one)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--scenario", help="scenario file or shipped name (default: sales_lead)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply all latencies")

    sp = add(
        "demo",
        local.cmd_demo,
        "watch a simulated team work on a sales lead (no API key, no network)",
    )
    sp.add_argument(
        "--scale",
        type=_positive_float,
        default=0.3,
        help="multiply the simulated latencies (default 0.3)",
    )

    sp = add(
        "bench",
        local.cmd_bench,
        "measure tierd against baselines on the simulator",
        with_json=False,
    )
    sp.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    sp.add_argument("--json", metavar="FILE", help="also write the figures to FILE")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `tierd` command, in the order `tierd --help` lists them."""
    p = argparse.ArgumentParser(
        prog="tierd",
        description="Run teams of AI agents in parallel: a premium orchestrator "
        "and planner, cheap executors. Try `tierd demo` (no API key needed).",
        epilog="exit codes: 0 ok; 1 refused by the daemon, or the task failed; 2 bad arguments "
        "or configuration; 3 no daemon running; 4 the task waits for you; 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"tierd {__version__}")
    add = _Commands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    _add_serve(add)
    _add_submit(add)
    _add_task_commands(add)
    _add_config(add)
    _add_rules(add)
    _add_tools(add)
    return p
