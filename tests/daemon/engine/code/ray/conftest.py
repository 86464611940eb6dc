"""The Ray backend's tests need Ray itself: without it they fail naming the package."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(autouse=True)
def ray_installed() -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.fail(
            "the Ray backend's tests need Ray, which is not installed: install the extra "
            "'tierd[ray]' (the dev group has it: uv sync --locked)"
        )
