"""The MCP Inspector's CLI mode (`@modelcontextprotocol/inspector`, the 0.15 line runs on
Node 20) against tierd: a third-party MCP client, run by npx.

The 0.15 CLI cannot send headers, so over HTTP it gets no token and must be refused; through
`tierd mcp` (the stdio bridge, which carries the token) it lists tierd's tools.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from mcp_kit import TWO
from support import ROOT
from support.daemon import DaemonProcess, daemon_on_simulator

pytestmark = pytest.mark.slow

INSPECTOR = "@modelcontextprotocol/inspector@0.15"


def npx() -> str:
    found = shutil.which("npx")
    assert found, "npx not found: install Node.js 20+ (Debian package `nodejs` with `npm`)"
    return found


def inspector(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [npx(), "-y", INSPECTOR, "--cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), TWO) as d:
        yield d


def test_inspector_lists_the_tools_through_the_stdio_bridge(daemon: DaemonProcess) -> None:
    done = inspector(
        "-e",
        f"TIERD_HOME={daemon.home}",
        "--method",
        "tools/list",
        sys.executable,
        "-m",
        "daemon.cli.mcp_bridge",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tools = {t["name"] for t in json.loads(done.stdout)["tools"]}
    assert {"submit_task", "wait_task", "answer_questions", "approve_result"} <= tools


def test_inspector_over_http_without_a_token_is_refused(daemon: DaemonProcess) -> None:
    done = inspector(f"{daemon.url}/mcp", "--transport", "http", "--method", "tools/list")
    assert done.returncode != 0
    assert "submit_task" not in done.stdout
    assert "bearer token" in done.stdout + done.stderr  # the guard's refusal, not another fault
