"""The `tierd` argument parser: every command, its arguments and its help.

Each command's function is set as the parser default `fn`; `main.py` runs it. Importing this
module loads only the standard library and the light command modules. A mistyped command or
action is answered with the closest one ("did you mean").
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable
from typing import NoReturn

from daemon import __version__
from daemon.cli import daemon_cmds, diff, local, mcp_bridge, settings, tasks

__all__ = ["TASK_STATES", "build_parser"]

#: How every command names a task.
TASK_HELP = "a task id, a unique prefix of one (4 characters or more), or @last (the newest task)"
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class _Parser(argparse.ArgumentParser):
    """argparse, plus "did you mean" for a mistyped command or choice."""

    def error(self, message: str) -> NoReturn:
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


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

    def __init__(self, sub: argparse._SubParsersAction[_Parser]) -> None:
        self.sub = sub

    def __call__(
        self, name: str, fn: Command, help_: str, with_json: bool = True
    ) -> argparse.ArgumentParser:
        sp = self.sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return _json_flag(sp) if with_json else sp


def _add_serve(add: _Commands) -> None:
    sp = add(
        "serve", local.cmd_serve, "run the daemon (--detach: in the background)", with_json=False
    )
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
    sp.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object a line (default text)",
    )
    sp.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, logging to daemon.log in the state directory "
        "(`tierd logs`, `tierd stop`)",
    )


def _add_service(add: _Commands) -> None:
    sp = add(
        "stop", daemon_cmds.cmd_stop, "stop the running daemon (tasks resume at its next start)"
    )
    sp.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="seconds to wait (default 60)"
    )
    sp = add(
        "logs",
        daemon_cmds.cmd_logs,
        "print the log of a daemon started with `tierd serve --detach`",
        with_json=False,
    )
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing what it adds")
    sp.add_argument(
        "-n", "--lines", type=_positive_int, default=100, help="the last N lines (default 100)"
    )


def _add_submit(add: _Commands) -> None:
    sp = add("submit", tasks.cmd_submit, "submit a task and print its id")
    sp.add_argument("goal", help="what the task should achieve")
    sp.add_argument(
        "--context-file",
        metavar="FILE",
        help="file whose text is the task's context ('-' reads stdin)",
    )
    sp.add_argument(
        "--attach",
        action="append",
        metavar="FILE",
        help="a file for the task (repeatable): a PNG, JPEG, WebP or GIF image, a PDF, a CSV "
        "or XLSX spreadsheet; its type is told by its content (and a .csv name)",
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


def _task_arg(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("task_id", metavar="TASK", help=TASK_HELP)
    return sp


def _add_rm(add: _Commands) -> None:
    sp = add(
        "rm",
        tasks.cmd_rm,
        "delete ended tasks (completed, failed, canceled) and all tierd keeps of them: "
        "records, attachments, checkpoints, worktrees and tierd branches, but a result "
        "branch you approved as a branch and a patch written for you (--json: a list)",
    )
    sp.add_argument("task_ids", metavar="TASK", nargs="+", help=TASK_HELP)


def _add_task_commands(add: _Commands) -> None:
    sp = add("ls", tasks.cmd_ls, "list tasks, newest first")
    sp.add_argument(
        "--state",
        choices=TASK_STATES,
        action="append",
        help="only tasks in this state; repeated: in any of them",
    )
    sp.add_argument(
        "--needs-me",
        action="store_true",
        help="only tasks waiting for you (input_required, awaiting_approval)",
    )
    sp.add_argument("--limit", type=_positive_int, default=50)
    sp.add_argument("--cursor", help="continue a listing (from the previous page)")
    sp = _task_arg(
        add("show", tasks.cmd_show, "show a task with its streams, verdicts, result and report")
    )
    sp.add_argument(
        "--result", action="store_true", help="print only the result, as Markdown (for piping)"
    )
    _task_arg(
        add(
            "watch",
            tasks.cmd_watch,
            "follow a task live until it ends or waits for you; on a terminal, answer its "
            "questions and approve or reject its result right there "
            "(exit 0 completed, 1 failed or canceled, 4 waits for you)",
        )
    )
    sp = _task_arg(add("answer", tasks.cmd_answer, "answer a task's question"))
    sp.add_argument("question_id")
    sp.add_argument("text")
    sp = _task_arg(
        add("approve", tasks.cmd_approve, "approve (or --reject) a result awaiting approval")
    )
    sp.add_argument("--reject", action="store_true", help="send the result back (needs --comment)")
    sp.add_argument("--comment", help="what to change (with --reject)")
    sp.add_argument(
        "--apply",
        choices=["branch", "merge", "patch"],
        help="a code task's result: leave it on its branch (default), merge it into your "
        "current branch, or write a patch file",
    )
    sp = _task_arg(
        add(
            "diff",
            diff.cmd_diff,
            "a code task's merged change (colored and paged on a terminal, plain when piped)",
        )
    )
    sp.add_argument("--stat", action="store_true", help="only the files with +/-")
    sp = _task_arg(
        add(
            "apply",
            diff.cmd_apply,
            "approve a code task's result and apply it (default: leave it on its branch)",
        )
    )
    how = sp.add_mutually_exclusive_group()
    how.add_argument(
        "--merge",
        action="store_true",
        help="merge into your current branch (refused if it would touch your uncommitted work)",
    )
    how.add_argument("--patch", action="store_true", help="write a patch file and print its path")
    _task_arg(add("cancel", tasks.cmd_cancel, "cancel a task"))
    _add_rm(add)
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
            "set",
            help="set a key in your global config file (a running daemon applies it, but "
            "server.*, store.*, executors.* and concurrency.* other than the ceiling at its "
            "next start)",
        )
    )
    cs.add_argument("key")
    cs.add_argument("value", help='the value; lists in TOML syntax, e.g. \'["a", "b"]\'')
    cs = _json_flag(
        csub.add_parser(
            "models",
            help="point every role at one server in one write: the premium model for the "
            "planner and orchestrator, the cheap one for the executors",
        )
    )
    cs.add_argument("--api-base", metavar="URL", help="the server's URL, for every role")
    cs.add_argument("--premium", metavar="NAME", help="model of the planner and orchestrator")
    cs.add_argument("--cheap", metavar="NAME", help="model of the executors")
    cs.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the variable holding the key, for every role ('' for a server that needs none)",
    )


def _add_rules(add: _Commands) -> None:
    sp = add(
        "rules",
        settings.cmd_rules,
        "global rules: list, add an instruction, couple areas",
        with_json=False,
    )
    # Bare `tierd rules` lists them.
    rsub = sp.add_subparsers(dest="action", required=False, metavar="ACTION")
    _json_flag(rsub.add_parser("list", help="the rules every task obeys (the default)"))
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
    sp.add_argument(
        "--code",
        action="store_true",
        help="a code task on a temporary Python project: tests first, parallel streams, real "
        "pytest in the sandbox, the diff applied",
    )
    sp.add_argument(
        "--keep", action="store_true", help="with --code: keep the temporary project and home"
    )
    add(
        "mcp",
        mcp_bridge.cmd_mcp,
        "MCP over stdio for editors: relays to the running daemon's /mcp (starts none)",
        with_json=False,
    )

    sp = add(
        "bench",
        local.cmd_bench,
        "measure tierd against baselines on the simulator",
        with_json=False,
    )
    sp.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    sp.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    sp.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this workload (repeatable, or comma-separated): sales_lead, wide, dag, "
        "dag_never, code, code-ray (the code workload on a local three-node Ray cluster beside "
        "the local one); skips the once-per-run API, scale and governor measurements",
    )
    sp.add_argument(
        "--skip",
        action="append",
        metavar="NAME",
        help="leave this workload out (repeatable); the once-per-run measurements still run",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `tierd` command, in the order `tierd --help` lists them."""
    p = _Parser(
        prog="tierd",
        description="Run teams of AI agents in parallel: a premium orchestrator "
        "and planner, cheap executors. Try `tierd demo` (no API key needed).",
        epilog="exit codes: 0 ok; 1 refused by the daemon, or the task failed; 2 bad arguments "
        "or configuration; 3 no daemon running; 4 the task waits for you; 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"tierd {__version__}")
    # Bare `tierd` prints this help (`main`).
    add = _Commands(p.add_subparsers(dest="command", required=False, metavar="COMMAND"))
    _add_serve(add)
    _add_service(add)
    _add_submit(add)
    _add_task_commands(add)
    _add_config(add)
    _add_rules(add)
    _add_tools(add)
    return p
