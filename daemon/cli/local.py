"""The commands that run in this process instead of asking a daemon: `serve` (the daemon
itself; `--detach` starts it in the background, `daemon_cmds`), and the tools `simulate`,
`demo` and `bench`.

Only these load the engine or the tooling, and only when they run: the imports are inside the
commands, so the client commands never pay for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from daemon.cli.output import EXIT_OK, EXIT_USAGE, err

__all__ = ["cmd_bench", "cmd_demo", "cmd_serve", "cmd_simulate"]


def cmd_serve(args: argparse.Namespace) -> int:
    if args.detach:
        from daemon.cli.daemon_cmds import detach

        return detach(args)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.api.server import ServeOptions, serve

    code = serve(
        ServeOptions(
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            log_level=args.log_level,
            log_format=args.log_format,
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
    from daemon.tools.simulator import run_simulator_cli

    try:
        run_simulator_cli(args.port, args.scenario, host=args.host, scale=args.scale)
    except FileNotFoundError as exc:
        err(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        err(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.code:
        from daemon.tools.code_demo import run_code_demo

        return run_code_demo(json_out=args.json, keep=args.keep)
    from daemon.tools.demo import run_demo

    return run_demo(as_json=args.json, scale=args.scale)


def cmd_bench(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.tools.bench.run import run_bench

    return int(
        run_bench(quick=args.quick, json_path=args.json, only=args.only or (), skip=args.skip or ())
    )
