"""Running tierd like a service, with real daemons: `serve --detach` with its log file, `logs`
and `logs -f`, JSON log lines with the task activity (never a key), `stop`; `config models`
in one write; messages that say when a key waits for a restart; a broken global config file
reported by `status` and refused by `submit` with its path and line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CHEAP, KEY_ENV, PREMIUM, ROOT
from support.cli import daemon_and_simulator, run_tierd
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator

from daemon.home.discovery import pid_alive, read_discovery

pytestmark = pytest.mark.slow

QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
STREAMS = [
    {
        "id": sid,
        "title": f"Part {sid}",
        "job": f"Write part {sid}.",
        "output_definition": f"The {sid} part.",
        "ownership": [f"part-{sid}/"],
        "acceptance_check": "It is there.",
    }
    for sid in ("a", "b")
]
TWO = {"latency": QUICK, "plan": {"streams": STREAMS}}
SECRET = "sk-tierd-test-do-not-log-4f1c9a"


def tierd(home: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_tierd(home, *args, **{"timeout": 120.0, **kw})


def _keyed_config(home: Path, sim_url: str) -> None:
    """Every role on the simulator with a key from KEY_ENV: a secret the log must not hold."""
    lines = []
    for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
        lines += [f"[models.{role}]", f'model = "{model}"', f'api_base = "{sim_url}/v1"']
        lines += [f'api_key_env = "{KEY_ENV}"', "timeout_s = 20.0", ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


def test_detach_logs_activity_as_json_lines_and_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_simulator(TWO) as sim:
        _keyed_config(home, sim.url)
        env = {KEY_ENV: SECRET}
        started = tierd(home, "serve", "--detach", "--port", "0", "--log-format", "json", env=env)
        follower: subprocess.Popen[str] | None = None
        try:
            assert started.returncode == 0, started.stderr
            assert "started in the background" in started.stderr
            info = read_discovery(home / "daemon.json")
            assert info is not None and pid_alive(info.pid)
            log = home / "daemon.log"
            assert log.stat().st_mode & 0o077 == 0  # private, like the rest of the home

            done = tierd(home, "submit", "Write two parts", "--watch", "--json")
            assert done.returncode == 0, done.stderr
            task = json.loads(done.stdout)
            bad = {**TWO, "plan": {"streams": STREAMS, "invalid_first": 50}}
            import httpx

            httpx.post(f"{sim.url}/_sim/scenario", json=bad, timeout=10).raise_for_status()
            failed = json.loads(tierd(home, "submit", "No plan", "--watch", "--json").stdout)
            assert failed["state"] == "failed"

            # `logs -f` prints what comes next.
            follower = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "logs", "-f", "-n", "1"],
                cwd=ROOT,
                env={**os.environ, "TIERD_HOME": str(home)},
                stdout=subprocess.PIPE,
                text=True,
            )
            assert _read_until(follower, "\n")  # it runs: the last line is printed
            httpx.post(f"{sim.url}/_sim/scenario", json=TWO, timeout=10).raise_for_status()
            third = tierd(home, "submit", "Write two parts again").stdout.strip()
            assert third.startswith("t")
            followed = _read_until(follower, f"task {third}: submitted")
            assert f"task {third}: submitted" in followed

            # Every line is a JSON object; the task's activity is there; the key is not.
            text = log.read_text()
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
            mine = [r["message"] for r in records if task["id"] in r["message"]]
            assert any(m.endswith("submitted") for m in mine), mine
            assert any("->" in m for m in mine), mine  # state changes
            assert any("verdict accept" in m for m in mine), mine
            assert any(r.get("task_id") == task["id"] for r in records)
            lost = [r["message"] for r in records if failed["id"] in r["message"]]
            assert any("failed" in m for m in lost), lost
            assert any("listening on" in r["message"] for r in records)
            assert SECRET not in text
            assert tierd(home, "logs", "-n", "3").stdout.count("\n") == 3

            # A second detached daemon on the same home is refused, saying why.
            again = tierd(home, "serve", "--detach", "--port", "0")
            assert again.returncode == 3 and "already runs" in again.stderr
        finally:
            if follower is not None:
                follower.kill()
                follower.wait()
            stopped = tierd(home, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert f"stopped the tierd daemon (pid {info.pid})" in stopped.stdout
        assert not pid_alive(info.pid) and not (home / "daemon.json").exists()
        gone = tierd(home, "stop")
        assert gone.returncode == 3 and "no tierd daemon is running" in gone.stderr
        assert tierd(home, "logs").returncode == 0  # the log outlives the daemon


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
    return seen


def test_stop_without_a_daemon_and_logs_without_a_log(tmp_path: Path) -> None:
    stop = tierd(tmp_path, "stop")
    assert stop.returncode == 3 and "no tierd daemon is running" in stop.stderr
    logs = tierd(tmp_path, "logs")
    assert logs.returncode == 1 and "serve --detach" in logs.stderr


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    with daemon_and_simulator(tmp_path_factory.mktemp("service-home"), TWO) as both:
        yield both


def test_config_models_points_every_role_at_one_server(
    daemon: tuple[DaemonProcess, Any], tmp_path: Path
) -> None:
    # No daemon: one write of the file, every role.
    alone = tierd(
        tmp_path,
        "config",
        "models",
        "--api-base",
        "http://127.0.0.1:11434/v1",
        "--premium",
        "openai/qwen-big",
        "--cheap",
        "openai/qwen-small",
        "--api-key-env",
        "",
        "--json",
    )
    assert alone.returncode == 0, alone.stderr
    out = json.loads(alone.stdout)
    assert out["applied"] is False and len(out["values"]) == 9
    shown = json.loads(tierd(tmp_path, "config", "show", "--json").stdout)
    for role, model in (("planner", "big"), ("orchestrator", "big"), ("executor", "small")):
        assert shown[f"models.{role}.model"]["value"] == f"openai/qwen-{model}"
        assert shown[f"models.{role}.api_base"]["value"] == "http://127.0.0.1:11434/v1"
        assert shown[f"models.{role}.api_key_env"]["value"] == ""
    assert tierd(tmp_path, "config", "models").returncode == 2  # nothing to set

    # With a daemon: it takes them (a model it cannot route would be refused).
    d, sim = daemon
    api_base = f"{sim.url}/v1"
    applied = tierd(
        d.home, "config", "models", "--api-base", api_base, "--premium", PREMIUM, "--cheap", CHEAP
    )
    assert applied.returncode == 0, applied.stderr
    assert "the running daemon applied it" in applied.stderr
    got = d.rpc("config/get", {"key": "models.executor"})["result"]["value"]
    assert got["model"] == CHEAP and got["api_base"] == api_base
    assert d.rpc("config/get", {"key": "models.planner.model"})["result"]["value"] == PREMIUM


@pytest.mark.parametrize(("key", "value"), [("server.port", "9999"), ("concurrency.floor", "2")])
def test_a_key_read_at_start_is_not_claimed_applied(
    daemon: tuple[DaemonProcess, Any], key: str, value: str
) -> None:
    d, _ = daemon
    out = tierd(d.home, "config", "set", key, value)
    assert out.returncode == 0, out.stderr
    assert "applied" not in out.stderr and "at its start" in out.stderr
    as_json = json.loads(tierd(d.home, "config", "set", key, value, "--json").stdout)
    assert as_json["applied"] is False and as_json["restart_needed"] is True
    live = json.loads(tierd(d.home, "config", "set", "concurrency.ceiling", "6", "--json").stdout)
    assert live["applied"] is True and "restart_needed" not in live


def test_a_broken_global_file_is_reported_and_refuses_submits(
    daemon: tuple[DaemonProcess, Any],
) -> None:
    d, _ = daemon
    config = d.home / "config.toml"
    good = config.read_text()
    try:
        config.write_text(good + "\n[rules]\nparallelize = 'sideways'\n")
        line = len((good + "\n[rules]\nparallelize = 'sideways'\n").splitlines())
        status = tierd(d.home, "status")
        assert status.returncode == 0
        assert "config: BROKEN" in status.stdout and f"{config}, line {line}" in status.stdout
        assert json.loads(tierd(d.home, "status", "--json").stdout)["config_error"]
        refused = tierd(d.home, "submit", "Write two parts")
        assert refused.returncode == 2
        assert f"{config}, line {line}" in refused.stderr and "parallelize" in refused.stderr
        over_rpc = d.rpc("task/submit", {"goal": "Write two parts"})
        assert over_rpc["error"]["code"] == -32003
        assert over_rpc["error"]["data"]["line"] == line
    finally:
        config.write_text(good)
    # Fixed: submits go through again, and status says nothing.
    ok = tierd(d.home, "submit", "Write two parts")
    assert ok.returncode == 0, ok.stderr
    assert "BROKEN" not in tierd(d.home, "status").stdout
    wait_for(lambda: d.rpc("task/get", {"task_id": "@last"})["result"]["state"] == "completed", 60)


def test_stop_stops_a_foreground_daemon_gracefully(tmp_path: Path) -> None:
    write_config(tmp_path, None)
    d = DaemonProcess(tmp_path).start()
    try:
        out = tierd(tmp_path, "stop", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["pid"] == d.proc.pid  # type: ignore[union-attr]
        assert d.proc is not None and d.proc.wait(timeout=30) == 0  # a clean exit, status 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGKILL)
        d.stop()
