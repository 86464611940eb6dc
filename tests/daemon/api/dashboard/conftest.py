"""Fixtures of the dashboard's tests: Chromium through playwright.

A machine without Chromium fails these tests, naming the package to install; without the
`playwright` package, the browser tests fail to import. Neither ever skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.chromium import CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Fails naming the package when Chromium is missing.
    executable = chromium_path("the dashboard's browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
