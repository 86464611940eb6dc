"""`tierd mcp`: the stdio bridge to the running daemon, driven by the official MCP client's
stdio transport (it launches the bridge as a subprocess, as an editor does).

Both wires pass through: 2025-11-25 (elicitation as requests from the daemon, relayed while a
call is open) and 2026-07-28 (the tasks extension and its tasks/* requests, elicitation inside
results). A client in `auto` mode probes with server/discover, which it gives 10 s: a bridge
that starts slower (a loaded machine) is met on 2025-11-25, so the 2026-07-28 test names its
wire rather than leave it to the probe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp_kit import Q_A, QUESTION, User, structured, wait_settled
from mcp_tasks import TasksClient
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


async def test_tasks_and_elicitation_on_the_2026_wire_through_the_bridge(
    daemon: DaemonProcess,
) -> None:
    user, tasks = User(), TasksClient()
    async with Client(
        bridge(daemon.home), mode="2026-07-28", extensions=[tasks], elicitation_callback=user
    ) as c:
        args = {"goal": "A note", "options": {"approval": "required"}}
        answer = structured(await c.call_tool("submit_task", args))
    (handle,) = tasks.handles
    assert answer["task_id"] == handle.task_id and answer["state"] == "completed"
    assert [sorted(p.requested_schema["properties"]) for p in user.asked][1] == [
        "comment",
        "decision",
    ]
    tierd = daemon.rpc("task/get", {"task_id": handle.task_id})["result"]
    assert answer["result"] == tierd["result"] and tierd["questions"][0]["answer"] == "EMEA"


async def test_wait_task_asks_the_user_through_the_bridge(daemon: DaemonProcess) -> None:
    user = User()
    async with Client(bridge(daemon.home), mode="legacy", elicitation_callback=user) as client:
        args = {"goal": "A note", "options": {"approval": "required"}}
        task_id = structured(await client.call_tool("submit_task", args))["task_id"]
        replies = []
        for _ in range(200):
            progress = structured(await client.call_tool("wait_task", {"task_id": task_id}))
            replies.append(progress["human_reply"])
            if progress["state"] == "completed":
                break
    assert progress["state"] == "completed"
    assert "the user chose approve" in replies and len(user.asked) == 2


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
