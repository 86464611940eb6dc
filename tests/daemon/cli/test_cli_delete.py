"""`tierd rm TASK...` as a user runs it, against a real daemon: tasks named by a prefix or
@last are deleted and said so, a live task is refused naming its state (exit 1) while the
others named still go, and `--json` prints the list of what was deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import QUICK, TWO, daemon_and_simulator, run_tierd
from support.daemon import DaemonProcess, wait_for
from support.simulator import use_scenario

pytestmark = pytest.mark.slow

SLOW = {**TWO, "latency": {**QUICK, "planner": 60.0}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    with daemon_and_simulator(tmp_path_factory.mktemp("home"), TWO) as both:
        yield both


def submit(home: Path) -> str:
    done = run_tierd(home, "submit", "Write the two parts")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def settled(d: DaemonProcess, task_id: str) -> str:
    def state() -> str | None:
        got: str = d.rpc("task/get", {"task_id": task_id})["result"]["state"]
        return got if got in {"completed", "failed", "canceled"} else None

    return wait_for(state, timeout=90, interval=0.1)


def ids(home: Path) -> set[str]:
    done = run_tierd(home, "ls", "--json", "--limit", "500")
    assert done.returncode == 0, done.stderr
    return {t["id"] for t in json.loads(done.stdout)["tasks"]}


def test_rm_by_prefix_and_at_last(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, TWO)
    first, second = submit(d.home), submit(d.home)
    assert settled(d, first) == settled(d, second) == "completed"

    # The shortest prefix of the first that no other task shares.
    others = ids(d.home) - {first}
    prefix = next(
        first[:n] for n in range(4, len(first)) if not any(o.startswith(first[:n]) for o in others)
    )
    assert len(prefix) < len(first)
    done = run_tierd(d.home, "rm", prefix)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"deleted {first} (completed): ")
    assert "records" in done.stdout and "its checkpoints" in done.stdout
    shown = run_tierd(d.home, "show", first)
    assert shown.returncode == 1 and "no task" in shown.stderr

    done = run_tierd(d.home, "rm", "@last", "--json")
    assert done.returncode == 0, done.stderr
    (deleted,) = json.loads(done.stdout)
    assert deleted["task_id"] == second and deleted["removed"]["rows"]["tasks"] == 1
    assert not {first, second} & ids(d.home)


def test_a_live_task_is_refused_and_the_others_still_go(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, TWO)
    ended = submit(d.home)
    settled(d, ended)
    use_scenario(sim, SLOW)
    live = submit(d.home)
    wait_for(lambda: d.rpc("task/get", {"task_id": live})["result"]["state"] == "planning")

    done = run_tierd(d.home, "rm", live, "tffffffff", ended, "--json")
    assert done.returncode == 1
    assert f"task {live} is planning" in done.stderr and "cancel it first" in done.stderr
    assert "no task with id 'tffffffff'" in done.stderr
    assert [t["task_id"] for t in json.loads(done.stdout)] == [ended]
    assert live in ids(d.home) and ended not in ids(d.home)

    assert run_tierd(d.home, "cancel", live).returncode == 0
    done = run_tierd(d.home, "rm", live)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"deleted {live} (canceled): ")
    assert live not in ids(d.home)
