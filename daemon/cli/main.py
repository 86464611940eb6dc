"""The `tierd` command line: parse the arguments, run the command, turn what went wrong into
a message and an exit code.

Client commands (submit, ls, show, watch, answer, approve, cancel, status, stop, config,
rules; `tasks.py`, `settings.py`, `daemon_cmds.py`) talk to a running daemon through
`client.py`, which is built on the standard library: they import neither litellm nor
langgraph (nor httpx), so they start fast. Only `serve`, `simulate`, `demo` and `bench`
(`local.py`) load the engine. Every command that prints data takes `--json` and then prints
only JSON on stdout; messages and warnings always go to stderr.

Exit codes:
    0    success
    1    the daemon refused the request (unknown task, a state that does not allow it, no
         model or API key configured, ...), or the task failed or was canceled (`watch`,
         `submit --watch`, `demo`)
    2    bad arguments or configuration (argparse errors, an unreadable --context-file, a
         config key or value tierd does not accept, a broken global config file)
    3    no daemon running for this home, or it does not answer (`serve`: one already runs)
    4    the task is waiting for a human: a question to answer or a result to approve
         (`watch`, `submit --watch`)
    130  interrupted (Ctrl-C); a task keeps running in the daemon
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from daemon.cli.output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_USAGE,
    INVALID_PARAMS,
    NOT_CONFIGURED,
    err,
)
from daemon.cli.parser import build_parser

if TYPE_CHECKING:
    from daemon.cli.client import ApiError

__all__ = ["build_parser", "main"]


def _api_error(exc: ApiError) -> int:
    """Word a refusal from the daemon so the user knows what to do next; the exit code."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == NOT_CONFIGURED and data.get("field") == "config":
        err(f"the task was not submitted: {exc.message}")
        return EXIT_USAGE  # the global config file is broken: configuration, exit 2
    if exc.code == NOT_CONFIGURED:
        err(f"the task was not submitted: {exc.message}")
        if data.get("env"):
            from daemon.cli.terminal import clean

            print(
                f"  The daemon reads API keys from its own environment: stop it, then start "
                f"it again with the variable set, e.g. `{clean(data['env'])}=... tierd serve`.",
                file=sys.stderr,
            )
        return EXIT_ERROR
    if exc.code == INVALID_PARAMS and isinstance(exc.data, list):
        fields = "; ".join(
            f"{d.get('field', '?')}: {d.get('message', '')}"
            for d in exc.data
            if isinstance(d, dict)
        )
        err(f"{exc.message}" + (f" ({fields})" if fields and fields not in exc.message else ""))
        return EXIT_ERROR
    err(exc.message)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """`tierd ARGS...`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `tierd`: what it can do
        parser.print_help()
        return EXIT_OK
    from daemon.cli.client import ApiError, DaemonNotRunning

    try:
        return int(args.fn(args))
    except DaemonNotRunning as exc:
        err(str(exc))
        return EXIT_NO_DAEMON
    except ApiError as exc:
        return _api_error(exc)
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
