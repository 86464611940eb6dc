"""The `tierd` command line: the argument parser, the API client it uses, the terminal views."""

from daemon.cli.main import main

__all__ = ["main"]
