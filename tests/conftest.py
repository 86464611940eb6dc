"""Shared fixtures: a temporary TIERD_HOME and a factory of daemons as real subprocesses.

Helpers live in `tests/support/` (imported as `support`), never in this file.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import DaemonProcess
from support.postgres import PostgresCluster, worker_cluster

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("TIERD_HOME", str(h))
    return h


@pytest.fixture
def daemon_factory(home: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def make(env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(home, env)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster per pytest worker, started on first use."""
    yield worker_cluster()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A new, empty PostgreSQL database of its own for this test: its SQLAlchemy URL."""
    return postgres_cluster.new_database()
