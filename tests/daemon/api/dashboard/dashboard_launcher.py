"""`tierd serve` with a clock the dashboard's tests can move (run as a script).

It runs the real daemon (`daemon.cli.main`), with one test-only addition:
`TIERD_TEST_CLOCK_FILE` names a file holding seconds to add to the dashboard's clock, so a
test can move time past a login link's 60 s without waiting for them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _skewed_clock(path: Path) -> Callable[[], float]:
    def clock() -> float:
        try:
            skew = float(path.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            skew = 0.0
        return time.monotonic() + skew

    return clock


def _use_test_clock(path: Path) -> None:
    from daemon.api.dashboard import sessions

    original = sessions.DashboardSessions.__init__

    def init(self: Any, **kw: Any) -> None:
        kw.setdefault("clock", _skewed_clock(path))
        original(self, **kw)

    sessions.DashboardSessions.__init__ = init  # type: ignore[method-assign]


def main() -> int:
    clock_file = os.environ.get("TIERD_TEST_CLOCK_FILE")
    if clock_file:
        _use_test_clock(Path(clock_file))
    from daemon.cli.main import main as tierd

    return tierd(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
