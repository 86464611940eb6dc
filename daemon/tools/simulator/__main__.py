"""`python -m daemon.tools.simulator [PORT] [SCENARIO] [SCALE]`: serve a scenario until Ctrl-C."""

import sys

from daemon.tools.simulator.server import run_simulator_cli

argv = sys.argv[1:]
run_simulator_cli(
    int(argv[0]) if argv else 8740,
    argv[1] if len(argv) > 1 else None,
    scale=float(argv[2]) if len(argv) > 2 else 1.0,
)
