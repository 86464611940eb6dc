"""Debian's Chromium for browser tests (playwright cannot download a browser here).

The flags keep it headless and quiet: without the background-networking ones it tries
Google's hosts at every start, and this machine's closed network refuses them.
"""

from __future__ import annotations

import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path(who: str) -> str:
    """Debian's Chromium, or a failure that says `who` needs it and how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError(
            f"{who} need Chromium: install Debian's `chromium` package "
            "(apt-get install -y chromium)"
        )
    return found
