"""The A2A tests' daemon: a real `tierd serve` on the simulator, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from a2a_kit import TWO, Env
from support.daemon import DaemonProcess, write_config
from support.simulator import running_simulator


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home: Path = tmp_path_factory.mktemp("home")
    with running_simulator(TWO) as sim:
        write_config(home, sim.url, "[a2a]\nsend_wait_s = 120.0\n")
        e = Env(DaemonProcess(home).start(), sim)
        try:
            yield e
        finally:
            e.d.stop()
