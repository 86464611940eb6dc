"""`tierd demo`: offline, no API key, runs to completion, reports, and cleans up after itself."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console
from support import ROOT

from daemon.config.layers import load_defaults, read_layer
from daemon.home.discovery import pid_alive, read_discovery
from daemon.tools.demo import (
    CHEAP_MODEL,
    DEMO_LEAD,
    PREMIUM_MODEL,
    _intro,
    _outro,
    demo_config,
)
from daemon.tools.demo_run import daemon_env


def demo_env(tmp: Path) -> dict[str, str]:
    """No API keys, temporary files under `tmp`, and a TIERD_HOME the demo must not touch."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    (tmp / "user-home").mkdir()
    env.update(TMPDIR=str(tmp), TIERD_HOME=str(tmp / "user-home"), COLUMNS="100")
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the demo sets it for itself
    return env


def leftovers(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("tierd-demo-*"))


def processes_in(tmp: Path) -> list[int]:
    """Processes whose working directory is under `tmp` (the demo's daemon runs in its home)."""
    found = []
    for p in psutil.process_iter(["cwd"]):
        cwd = p.info.get("cwd") or ""
        if cwd.startswith(str(tmp)) and p.pid != os.getpid():
            found.append(p.pid)
    return found


def test_demo_config_points_every_role_at_the_simulator(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(demo_config("http://127.0.0.1:1234/v1"))
    layer = read_layer("global", path, load_defaults())
    for role, model in (
        ("orchestrator", PREMIUM_MODEL),
        ("planner", PREMIUM_MODEL),
        ("executor", CHEAP_MODEL),
    ):
        assert layer.values[f"models.{role}.model"] == model
        assert layer.values[f"models.{role}.api_base"] == "http://127.0.0.1:1234/v1"
        assert layer.values[f"models.{role}.api_key_env"] == ""


def test_the_daemon_gets_no_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real")
    monkeypatch.setenv("NO_PROXY", "example.com")
    env = daemon_env(tmp_path)
    assert not [k for k in env if k.endswith("_API_KEY")]
    assert env["TIERD_HOME"] == str(tmp_path)
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["NO_PROXY"].split(",") == ["example.com", "127.0.0.1", "localhost"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("demo")
    env = demo_env(tmp)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--json", "--scale", "0.1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    yield {
        "proc": proc,
        "tmp": tmp,
        "seconds": time.monotonic() - started,
        "user_home": Path(env["TIERD_HOME"]),
    }


@pytest.mark.slow
def test_demo_json_runs_to_completion_with_its_report(demo_run: dict[str, Any]) -> None:
    proc = demo_run["proc"]
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)  # stdout is the JSON and nothing else
    assert "simulated" in proc.stderr
    assert task["state"] == "completed", task["error"]
    assert task["context"] == DEMO_LEAD
    assert task["result"].startswith("# Recommendation")
    report = task["report"]
    streams = {s["id"]: s for s in report["streams"]}
    assert set(streams) == {"research", "draft", "fit_risk"}
    assert all(s["verdict"] in {"accept", "fix"} for s in streams.values())
    assert streams["draft"]["rounds"] == 2  # sent back once by the conflict check
    per_role = report["usage"]["per_role"]
    assert set(per_role) == {"planner", "orchestrator", "executor"}
    assert all(per_role[r]["cost_usd"] > 0 and per_role[r]["tokens"] > 0 for r in per_role)
    cost = report["cost"]
    assert cost["premium_model"] == PREMIUM_MODEL
    assert cost["tiering_saved_usd"] > 0
    assert report["time"]["sequential_s"] > 0 and report["time"]["wall_clock_s"] > 0
    assert demo_run["seconds"] < 60


@pytest.mark.slow
def test_demo_leaves_nothing_behind(demo_run: dict[str, Any]) -> None:
    tmp = demo_run["tmp"]
    assert leftovers(tmp) == []
    assert processes_in(tmp) == []
    assert list(demo_run["user_home"].iterdir()) == []  # the user's home was never touched


@pytest.mark.slow
def test_the_text_view_says_simulated_and_shows_the_report(demo_run: dict[str, Any]) -> None:
    task = json.loads(demo_run["proc"].stdout)
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None)
    _intro(console, 0.3, quiet=False)
    _outro(console, task)
    text = buf.getvalue()
    assert "The models are simulated" in text
    assert "merged result" in text and "Harbor & Pine" in text
    assert "tiering saved $" in text
    assert "one after another" in text
    for role in ("planner", "orchestrator", "executor"):
        assert role in text


def start_demo(tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "demo", "--scale", "2"],
        cwd=ROOT,
        env=demo_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(proc: subprocess.Popen[str], found: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        value = found()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("the demo did not get there in time")


def stopped_cleanly(proc: subprocess.Popen[str], daemon_pid: int, tmp: Path) -> None:
    assert proc.wait(30) == 130
    assert proc.stderr is not None
    assert "interrupted" in proc.stderr.read()
    assert not pid_alive(daemon_pid)
    assert leftovers(tmp) == []
    assert processes_in(tmp) == []


@pytest.mark.slow
def test_ctrl_c_while_the_task_runs_cleans_up(tmp_path: Path) -> None:
    proc = start_demo(tmp_path)
    try:

        def discovered() -> Any:
            homes = leftovers(tmp_path)
            return read_discovery(homes[0] / "daemon.json") if homes else None

        info = wait_until(proc, discovered)
        assert pid_alive(info.pid)
        proc.send_signal(signal.SIGINT)
        stopped_cleanly(proc, info.pid, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.slow
def test_sigterm_while_the_daemon_starts_cleans_up(tmp_path: Path) -> None:
    proc = start_demo(tmp_path)
    try:
        children = wait_until(proc, lambda: psutil.Process(proc.pid).children())
        proc.send_signal(signal.SIGTERM)
        stopped_cleanly(proc, children[0].pid, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_an_interrupt_while_the_daemon_is_forked_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM that lands inside `Popen`, after the fork and before it returns (where the test
    above sends it when it sees the child), must not leave the daemon running unhandled."""
    from daemon.tools import demo_run

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen_then_sigterm(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler runs here, before this call returns
        return started[-1]

    monkeypatch.setattr(demo_run.subprocess, "Popen", popen_then_sigterm)
    try:
        with demo_run._sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
            demo_run.start_daemon(tmp_path)
        assert [p.poll() is not None for p in started] == [True]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
