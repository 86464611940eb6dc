"""`python -m daemon.tools.simulator [PORT] [SCENARIO] [SCALE]`: serve a scenario until Ctrl-C
(the same as `tierd simulate`, without the rest of the CLI)."""

import argparse

from daemon.tools.simulator.server import run_simulator_cli

parser = argparse.ArgumentParser(
    prog="python -m daemon.tools.simulator", description="tierd's OpenAI-compatible simulator"
)
parser.add_argument("port", nargs="?", type=int, default=8740, help="port (default 8740)")
parser.add_argument("scenario", nargs="?", default=None, help="a scenario's TOML file")
parser.add_argument("scale", nargs="?", type=float, default=1.0, help="latency scale")
args = parser.parse_args()
run_simulator_cli(args.port, args.scenario, scale=args.scale)
