"""The daemon as a process: discovery file, one daemon per home, clean stops, restarts, SSE."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.daemon import wait_for, write_config
from support.simulator import running_simulator

SLOW = {"latency": {"planner": 60.0, "orchestrator": 60.0, "executor": 60.0}}


def test_discovery_file_is_private_and_removed_on_sigterm(home: Path, daemon_factory: Any) -> None:
    d = daemon_factory().start()
    mode = stat.S_IMODE(d.discovery.stat().st_mode)
    assert mode == 0o600
    info = json.loads(d.discovery.read_text())
    assert set(info) == {"url", "token", "pid", "version", "instance_id"}
    assert info["url"].startswith("http://127.0.0.1:")
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
    assert d.stop(signal.SIGTERM) == 0
    assert not d.discovery.exists()


def test_sigint_is_a_clean_stop_and_token_is_kept(home: Path, daemon_factory: Any) -> None:
    first = daemon_factory().start()
    token = first.token
    assert first.stop(signal.SIGINT) == 0
    second = daemon_factory().start()
    assert second.token == token  # created once, then kept
    assert second.stop() == 0


def test_second_daemon_on_the_same_home_is_refused(home: Path, daemon_factory: Any) -> None:
    first = daemon_factory().start()
    second = daemon_factory()
    proc = second.spawn()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "already runs" in err and str(first.proc.pid) in err
    assert json.loads(first.discovery.read_text())["pid"] == first.proc.pid


def test_stale_discovery_file_is_replaced(home: Path, daemon_factory: Any) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "daemon.json").write_text(
        json.dumps({"url": "http://127.0.0.1:1", "token": "x", "pid": dead.pid, "version": "0"})
    )
    d = daemon_factory().start()
    info = json.loads(d.discovery.read_text())
    assert info["pid"] == d.proc.pid and info["url"] != "http://127.0.0.1:1"


def test_killed_daemon_leaves_a_stale_file_that_the_next_start_replaces(
    home: Path, daemon_factory: Any
) -> None:
    first = daemon_factory().start()
    first.kill()
    assert first.discovery.exists()  # SIGKILL: no chance to clean up
    second = daemon_factory().start()
    assert json.loads(second.discovery.read_text())["pid"] == second.proc.pid


def test_non_loopback_host_refused_without_allow_remote(home: Path) -> None:
    env = {**os.environ, "TIERD_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr
    assert not (home / "daemon.json").exists()


def test_broken_config_stops_start_with_path_and_line(home: Path) -> None:
    (home / "config.toml").write_text('[rules]\nparallelize = "sideways"\n')
    env = {**os.environ, "TIERD_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "config.toml, line 2" in proc.stderr and "rules.parallelize" in proc.stderr


def test_tasks_and_events_survive_a_restart_and_sse_resumes(
    home: Path, daemon_factory: Any
) -> None:
    with running_simulator(SLOW) as sim:
        write_config(home, sim.url)
        d = daemon_factory().start()
        client = d.client()
        task_id = client.submit("Keep me across restarts")["task_id"]
        wait_for(lambda: client.get(task_id)["state"] == "planning")

        # Read the first events, then reconnect from the last id seen.
        seen: list[dict[str, Any]] = []
        for ev in client.events(task_id, timeout=10):
            seen.append(ev)
            if ev["type"] == "task.state" and ev["data"]["state"] == "planning":
                break
        assert [e["data"]["state"] for e in seen] == ["queued", "planning"]
        client.cancel(task_id)  # adds events while nobody listens
        resumed = []
        for ev in client.events(task_id, last_event_id=seen[-1]["id"], timeout=10):
            resumed.append(ev)
            if ev["type"] == "task.state" and ev["data"]["state"] == "canceled":
                break
        assert resumed[0]["id"] > seen[-1]["id"]
        assert {e["id"] for e in resumed}.isdisjoint({e["id"] for e in seen})
        ids = [e["id"] for e in seen + resumed]
        assert ids == sorted(ids)
        last_before_restart = resumed[-1]["id"]
        other = client.submit("Second task, live across the restart")["task_id"]
        client.close()
        assert d.stop() == 0

        d2 = daemon_factory().start()
        client = d2.client()
        assert client.get(task_id)["state"] == "canceled"
        assert client.get(other)["state"] in {"queued", "planning"}  # resumed, not lost
        after = []
        for ev in client.events(last_event_id=last_before_restart, timeout=10):
            after.append(ev)
            if ev["task_id"] == other and ev["type"] == "task.state":
                break
        assert after and all(e["id"] > last_before_restart for e in after)
        assert other in {e["task_id"] for e in after}
        # Replaying the whole history after the restart gives every id exactly once.
        replay = []
        for ev in client.events(task_id, last_event_id=0, timeout=10):
            replay.append(ev["id"])
            if ev["type"] == "task.state" and ev["data"]["state"] == "canceled":
                break
        assert replay == [e["id"] for e in seen + resumed]
        client.close()


@pytest.mark.parametrize("bad", ["abc", "-1"])
def test_bad_last_event_id_is_a_clear_4xx(home: Path, daemon_factory: Any, bad: str) -> None:
    d = daemon_factory().start()
    with d.http() as h:
        r = h.get("/v1/events", headers={"Last-Event-ID": bad})
    assert r.status_code == 422 and "Last-Event-ID" in r.json()["error"]["message"]


def test_a_database_outside_the_home_is_private_too(
    home: Path, tmp_path: Path, daemon_factory: Any
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = elsewhere / "tasks.db"
    db.touch()
    db.chmod(0o644)  # made before tierd ever ran, readable by all
    (home / "config.toml").write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    d = daemon_factory().start()  # it creates its tables: a write, so a WAL beside the db
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.with_name("tasks.db-wal").stat().st_mode) == 0o600
    assert not (home / "tierd.db").exists()
    assert d.stop() == 0
