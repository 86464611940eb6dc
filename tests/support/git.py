"""git as a test runs it: in the test's own name, never with the caller's GIT_* variables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_IDENTITY = ("-c", "user.name=Test User", "-c", "user.email=test@example.com")
_IDENTITY += ("-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null")


def run_git(cwd: Path, *args: str) -> str:
    """git in the test's own name (with an identity), for setting up and checking."""
    done = subprocess.run(
        ["git", *_IDENTITY, "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    return done.stdout
