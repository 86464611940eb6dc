"""How every command speaks: its exit codes, JSON (only) on stdout with `--json`, messages
and warnings on stderr, and the daemon client and terminal console it uses. Text from the
daemon reaches the terminal only neutralised (`terminal.py`).

Nothing heavy is imported here (the client and rich load when first used): client commands
start fast.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from daemon.cli.client import Client

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NEEDS_HUMAN",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "INVALID_PARAMS",
    "NOT_CONFIGURED",
    "client",
    "console",
    "err",
    "print_json",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_NEEDS_HUMAN = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
#: JSON-RPC codes the CLI words specially (daemon/service/errors.py).
INVALID_PARAMS, NOT_CONFIGURED = -32602, -32003


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def err(message: str) -> None:
    """A message on stderr; daemon text in it is neutralised (see `terminal.py`)."""
    from daemon.cli.terminal import clean

    print(f"tierd: {clean(message)}", file=sys.stderr)


def client() -> Client:
    """The client of this home's running daemon (warns when its version differs)."""
    from daemon.cli.client import Client

    found = Client.discover()
    if found.version_mismatch:
        err(f"warning: {found.version_mismatch}")
    return found


def console() -> Console:
    """The terminal console: it reads no markup in strings (`terminal.console`)."""
    from daemon.cli.terminal import console as safe_console

    return safe_console()
