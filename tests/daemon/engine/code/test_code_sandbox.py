"""Commands under the real bubblewrap: they change their worktree and nothing else, reach no
network, see no daemon variable, and die on timeout or when their await is cancelled.

Where bubblewrap is missing these tests FAIL naming the package (the `bwrap` fixture), never
skip: the sandbox is a promise of the product.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.sandbox import (
    SandboxPolicy,
    SandboxUnavailable,
    check_sandbox,
    run_sandboxed,
)
from daemon.engine.code.worktrees import WorktreeManager

FAST = SandboxPolicy(timeout_s=20)


@pytest.fixture
def wt(tmp_path: Path, bwrap: str) -> Path:
    path = tmp_path.resolve() / "home" / "worktrees" / "t1" / "a"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback server of the test's own, which no sandboxed command may reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.setblocking(False)
        yield srv


def accepted(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", marker]:
            found.append(proc)
    return found


async def _until(check: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


async def gone(marker: str, within_s: float = 3.0) -> bool:
    return await _until(lambda: not sleepers(marker), within_s)


async def started(marker: str, within_s: float = 5.0) -> bool:
    return await _until(lambda: bool(sleepers(marker)), within_s)


def test_bubblewrap_is_installed(bwrap: str) -> None:
    assert os.access(bwrap, os.X_OK)


async def test_missing_bubblewrap_names_the_package(wt: Path) -> None:
    policy = SandboxPolicy(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="bubblewrap") as err:
        await run_sandboxed("true", wt, policy)
    assert 'sandbox = "none"' in str(err.value)
    # Chosen explicitly, "none" runs without bubblewrap (the environment still cleared).
    done = await run_sandboxed("pwd", wt, SandboxPolicy(mode="none", bwrap="/nonexistent/bwrap"))
    assert done.ok and done.output.strip() == str(wt)


async def test_sandbox_starts(wt: Path) -> None:
    await check_sandbox(FAST, wt)


async def test_writes_only_inside_the_worktree(wt: Path, user_repo: Path, tmp_path: Path) -> None:
    before = (user_repo / "README.md").read_bytes()
    probe = Path("/var/tmp") / f"tierd-probe-{uuid.uuid4().hex}"
    private = Path("/tmp") / f"tierd-probe-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    outside.mkdir()
    script = (
        f"echo inside > {wt}/made-here.txt && echo ok-inside;"
        f"echo x > {user_repo}/README.md || echo refused-repo;"
        f"echo x > {probe} || echo refused-var;"
        f"echo x > {outside}/f || echo refused-outside;"
        f"echo x > {private} && echo private-tmp-ok"
    )
    done = await run_sandboxed(script, wt, FAST)
    assert done.ok, done.output
    for word in ("ok-inside", "refused-repo", "refused-var", "refused-outside", "private-tmp-ok"):
        assert word in done.output
    assert (wt / "made-here.txt").read_text() == "inside\n"
    assert (user_repo / "README.md").read_bytes() == before
    assert not probe.exists() and not (outside / "f").exists()
    # /tmp inside is private: what a command leaves there is gone with it.
    assert not private.exists()


async def test_no_network(wt: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    connect = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
    done = await run_sandboxed(["/bin/bash", "-c", connect], wt, FAST)
    assert done.exit_code != 0 and "connected" not in done.output
    assert not accepted(listener)
    # A setup command with `setup_network` gets the network (here: the loopback listener).
    shared = await run_sandboxed(["/bin/bash", "-c", connect], wt, SandboxPolicy(network=True))
    assert shared.ok and "connected" in shared.output
    await asyncio.sleep(0.05)
    assert accepted(listener)


async def test_environment_is_cleared(wt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-daemon-key-123")
    monkeypatch.setenv("TIERD_HOME", "/somewhere")
    for policy in (SandboxPolicy(env={"CI": "1"}), SandboxPolicy(mode="none", env={"CI": "1"})):
        done = await run_sandboxed("env", wt, policy)
        names = {line.split("=", 1)[0] for line in done.output.splitlines() if "=" in line}
        assert "sk-daemon-key-123" not in done.output and "OPENAI_API_KEY" not in names
        assert "TIERD_HOME" not in names and {"PATH", "HOME", "LANG", "CI"} <= names


async def test_timeout_kills_the_command(wt: Path) -> None:
    marker = f"{31 + uuid.uuid4().int % 1000 / 1000:.3f}"
    started = time.monotonic()
    done = await run_sandboxed(["/bin/sh", "-c", f"echo started; sleep {marker}"], wt,
                               SandboxPolicy(timeout_s=0.5))  # fmt: skip
    assert done.timed_out and not done.ok and time.monotonic() - started < 5
    assert "started" in done.output and "killed" in done.output
    assert await gone(marker)


async def test_cancel_kills_the_command(wt: Path) -> None:
    marker = f"{41 + uuid.uuid4().int % 1000 / 1000:.3f}"
    running = asyncio.create_task(run_sandboxed(f"sleep {marker}", wt, FAST))
    assert await started(marker), "the command never started"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await gone(marker)


async def test_output_is_bounded_with_a_note(wt: Path) -> None:
    script = "echo FIRST; i=0; while [ $i -lt 5000 ]; do echo line-$i; i=$((i+1)); done; echo LAST"
    done = await run_sandboxed(script, wt, SandboxPolicy(max_output_bytes=2000))
    assert done.ok and done.truncated
    assert done.output.startswith("FIRST") and done.output.rstrip().endswith("LAST")
    assert "bytes of output omitted" in done.output and len(done.output) < 2200


async def test_link_dirs_are_read_only_inside(user_repo: Path, wt_root: Path) -> None:
    wt = await WorktreeManager(user_repo, wt_root).create("t1", "a", base="HEAD")
    prep = await prepare_worktree(user_repo, wt.path, link_dirs=[".venv"])
    policy = prep.sandbox(wt.path, FAST)
    script = (
        "cat .venv/marker; tool;"
        "touch .venv/new 2>/dev/null || echo venv-read-only;"
        "echo x > .venv/marker 2>/dev/null || echo marker-read-only;"
        "git status --short >/dev/null && echo git-works"
    )
    done = await run_sandboxed(script, wt.path, policy)
    for word in ("the user's venv", "tool-ran", "venv-read-only", "marker-read-only", "git-works"):
        assert word in done.output, done.output
    assert not (user_repo / ".venv" / "new").exists()
    assert (user_repo / ".venv" / "marker").read_text() == "the user's venv\n"


async def test_hidden_paths_are_empty_inside(wt: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config.toml").write_text("api_key = 'sk-in-config'\n")
    done = await run_sandboxed(
        f"cat {home}/config.toml || echo hidden; ls {wt}", wt, SandboxPolicy(hide=(home,))
    )
    assert "sk-in-config" not in done.output and "hidden" in done.output


async def test_background_leftovers_die_with_the_command(wt: Path) -> None:
    for policy in (FAST, SandboxPolicy(mode="none", timeout_s=20)):
        marker = f"{51 + uuid.uuid4().int % 1000 / 1000:.3f}"
        started_at = time.monotonic()
        done = await run_sandboxed(f"sleep {marker} & echo hi", wt, policy)
        assert done.ok and done.output.strip() == "hi" and time.monotonic() - started_at < 5
        assert await gone(marker), policy.mode
