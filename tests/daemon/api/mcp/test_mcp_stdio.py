"""`tierd mcp`: the stdio bridge to the running daemon, driven by the official MCP client's
stdio transport (it launches the bridge as a subprocess, as an editor does)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp_kit import Q_A, QUESTION, structured, wait_settled
from support import ROOT
from support.daemon import DaemonProcess, daemon_on_simulator

pytestmark = pytest.mark.slow

#: The bridge's command line. `tierd mcp` once the CLI parser names it; the module runs the
#: same function with the same exit codes.
BRIDGE = [sys.executable, "-m", "daemon.cli", "mcp"]


def bridge(home: Path) -> StdioServerParameters:
    env = {**os.environ, "TIERD_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return StdioServerParameters(command=BRIDGE[0], args=BRIDGE[1:], env=env, cwd=str(ROOT))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), QUESTION) as d:
        yield d


async def test_a_task_through_the_stdio_bridge(daemon: DaemonProcess) -> None:
    async with Client(bridge(daemon.home)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"submit_task", "wait_task", "answer_questions", "approve_result"} <= names
        task_id = structured(
            await client.call_tool(
                "submit_task", {"goal": "A note", "options": {"approval": "required"}}
            )
        )["task_id"]
        asked = await wait_settled(client, task_id)
        assert asked["state"] == "input_required"
        (question,) = asked["open_questions"]
        assert question["question"] == Q_A
        structured(
            await client.call_tool(
                "answer_questions", {"task_id": task_id, "answers": {question["id"]: "EMEA"}}
            )
        )
        assert (await wait_settled(client, task_id))["state"] == "awaiting_approval"
        structured(
            await client.call_tool("approve_result", {"task_id": task_id, "decision": "approve"})
        )
        done = await wait_settled(client, task_id)
        assert done["state"] == "completed"
        read = await client.read_resource(f"tierd://tasks/{task_id}/result")
        assert read.contents[0].text == done["result"]  # type: ignore[union-attr]
    # The same task, seen through the daemon's own API: one store, one task.
    assert daemon.rpc("task/get", {"task_id": task_id})["result"]["state"] == "completed"


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    env = {**os.environ, "TIERD_HOME": str(home)}
    done = subprocess.run(
        BRIDGE, cwd=ROOT, env=env, input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert "no tierd daemon is running" in done.stderr and "tierd serve" in done.stderr
    assert done.stdout == ""  # nothing an MCP client could mistake for a message
