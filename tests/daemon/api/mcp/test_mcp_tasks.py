"""tierd tasks as MCP tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663), and the
human's part through elicitation, driven by the official MCP Python client over real HTTP.

The client side of the extension is `mcp_tasks` (the SDK has the mechanism, not the runtime).
A real daemon subprocess, models from tierd's simulator over real HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_kit import FAST, Q_A, QUESTION, SLOW, TWO, User, mcp_client, structured
from mcp_tasks import (
    TASKS,
    DetailedTask,
    TasksClient,
    answer_inputs,
    cancel_task,
    follow_task,
    get_task,
)
from support.code_plans import HALF, adds_half
from support.daemon import DaemonProcess, write_config
from support.git import run_git
from support.simulator import running_simulator, use_scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: The bound on a tool call in these daemons' config (mcp.tool_wait_s).
BOUND_S = 4.0


class Env:
    def __init__(self, d: DaemonProcess, sim: Any) -> None:
        self.d, self.sim = d, sim

    def use(self, scenario: dict[str, Any]) -> None:
        use_scenario(self.sim, scenario)

    def task(self, task_id: str) -> dict[str, Any]:
        """The task as tierd's own JSON-RPC API shows it."""
        found: dict[str, Any] = self.d.rpc("task/get", {"task_id": task_id})["result"]
        return found


def start_daemon(home: Path, sim_url: str) -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim_url, f"[mcp]\ntool_wait_s = {BOUND_S}\n")
    return DaemonProcess(home).start(timeout=120)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running_simulator(TWO) as sim:
        d = start_daemon(tmp_path_factory.mktemp("home"), sim.url)
        try:
            yield Env(d, sim)
        finally:
            d.stop()


async def poll(session: Any, task_id: str, statuses: set[str], rounds: int = 1500) -> DetailedTask:
    """tasks/get until the task's status is one of `statuses`."""
    for _ in range(rounds):
        task = await get_task(session, task_id)
        if task.status in statuses:
            return task
        assert task.status not in {"failed", "cancelled"}, task
        await anyio.sleep(0.2)
    raise AssertionError(f"task {task_id} never reached {statuses}")


def the_request(task: DetailedTask) -> tuple[str, dict[str, Any]]:
    """The one input request of an input_required task: its key and its params."""
    assert task.input_requests is not None
    ((key, request),) = task.input_requests.items()
    assert request["method"] == "elicitation/create"
    return key, request["params"]


async def submit(client: Any, goal: str, **args: Any) -> Any:
    """A task-augmented submit_task: the handle, as the client receives it."""
    return await client.session.call_tool("submit_task", {"goal": goal, **args}, allow_claimed=True)


async def test_a_task_augmented_submit_answers_with_the_tierd_task_as_a_handle(env: Env) -> None:
    env.use(SLOW)  # models answer after a minute: the task is under way while we look
    async with mcp_client(env.d, extensions=[TasksClient()]) as client:
        assert client.protocol_version == "2026-07-28"
        caps = client.session.server_capabilities
        assert caps is not None and TASKS in (caps.extensions or {})
        handle = await submit(client, "Slow work")
        assert handle.result_type == "task" and handle.status == "working"
        assert handle.ttl_ms is None and handle.poll_interval_ms == 2000
        # The MCP task is the tierd task: the same id, the same store.
        assert env.task(handle.task_id)["state"] in {"queued", "planning"}
        got = await get_task(client.session, handle.task_id)
        assert got.status == "working" and got.status_message
        assert got.created_at == handle.created_at
        await cancel_task(client.session, handle.task_id)
        assert env.task(handle.task_id)["state"] == "canceled"
        assert (await get_task(client.session, handle.task_id)).status == "cancelled"
        # A cancel of an ended task is acknowledged (cancellation is cooperative).
        await cancel_task(client.session, handle.task_id)
        with pytest.raises(MCPError) as unknown:
            await get_task(client.session, "t0000000000000000dead")
        assert unknown.value.code == types.INVALID_PARAMS
        # An MCP task id is whole: a prefix tierd's own API would take names no task here.
        with pytest.raises(MCPError):
            await get_task(client.session, handle.task_id[:8])


async def test_input_required_is_answered_by_elicitation_and_the_result_is_merged(
    env: Env,
) -> None:
    env.use(QUESTION)
    user = User()
    async with mcp_client(env.d, extensions=[TasksClient()], elicitation_callback=user) as client:
        handle = await submit(client, "A market note", options={"approval": "required"})
        asked = await poll(client.session, handle.task_id, {"input_required"})
        key, params = the_request(asked)
        (qid,) = params["requestedSchema"]["properties"]
        assert params["requestedSchema"]["properties"][qid]["title"] == Q_A
        assert env.task(handle.task_id)["state"] == "input_required"
        # Polled again before answering: the same request under the same key.
        assert the_request(await get_task(client.session, handle.task_id))[0] == key
        assert await answer_inputs(client.session, asked, set()) == 1
        # Recorded as task/answer records it.
        (question,) = env.task(handle.task_id)["questions"]
        assert question["id"] == qid and question["answer"] == "EMEA"

        approval = await poll(client.session, handle.task_id, {"input_required"})
        while "decision" not in the_request(approval)[1]["requestedSchema"]["properties"]:
            approval = await poll(client.session, handle.task_id, {"input_required"})
        _, params = the_request(approval)
        assert env.task(handle.task_id)["state"] == "awaiting_approval"
        assert "awaits your approval" in params["message"]
        assert "apply" not in params["requestedSchema"]["properties"]  # a text task
        await answer_inputs(client.session, approval, set())

        done = await poll(client.session, handle.task_id, {"completed"})
        tierd = env.task(handle.task_id)
        assert tierd["state"] == "completed"
        assert done.result is not None
        result = types.CallToolResult.model_validate(done.result)
        assert result.structured_content is not None
        assert result.structured_content["result"] == tierd["result"]
        assert result.content[0].text == tierd["result"]  # type: ignore[union-attr]
    assert len(user.asked) == 2


async def test_the_client_resolves_the_handle_to_the_final_tool_result(env: Env) -> None:
    env.use(QUESTION)
    user = User()
    tasks = TasksClient()
    async with mcp_client(env.d, extensions=[tasks], elicitation_callback=user) as client:
        result = await client.call_tool("submit_task", {"goal": "A note"})
    (handle,) = tasks.handles
    answer = structured(result)  # validated against submit_task's output schema by the client
    assert answer["task_id"] == handle.task_id and answer["state"] == "completed"
    assert answer["result"] == env.task(handle.task_id)["result"]
    assert [p.requested_schema["required"] for p in user.asked] == [
        [q["id"] for q in env.task(handle.task_id)["questions"]]
    ]


async def test_a_decline_leaves_the_task_waiting_and_it_is_asked_again(env: Env) -> None:
    env.use(QUESTION)
    user = User(decline_first=True)
    async with mcp_client(env.d, extensions=[TasksClient()], elicitation_callback=user) as client:
        handle = await submit(client, "A note")
        asked = await poll(client.session, handle.task_id, {"input_required"})
        declined_key, _ = the_request(asked)
        await answer_inputs(client.session, asked, set())
        # Nothing lost: still waiting, the question still open, asked again under a new key.
        again = await get_task(client.session, handle.task_id)
        assert again.status == "input_required"
        (question,) = env.task(handle.task_id)["questions"]
        assert question["answer"] is None
        key, _ = the_request(again)
        assert key != declined_key
        await answer_inputs(client.session, again, {declined_key})
        assert (await follow_task(client.session, handle.task_id, 0.2)).status == "completed"
    assert env.task(handle.task_id)["questions"][0]["answer"] == "EMEA"


async def test_a_client_without_the_extension_gets_the_plain_tools(env: Env) -> None:
    env.use(SLOW)
    async with mcp_client(env.d) as client:
        answer = structured(await client.call_tool("submit_task", {"goal": "Plain"}))
        assert answer["state"] == "queued" and "wait_task" in answer["next_step"]
        with pytest.raises(MCPError) as refused:
            await get_task(client.session, answer["task_id"])
        assert refused.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
        await client.call_tool("cancel_task", {"task_id": answer["task_id"]})
    # The extension is a 2026-07-28 one: on the older wire the same client gets plain tools.
    async with mcp_client(env.d, mode="legacy", extensions=[TasksClient()]) as client:
        answer = structured(await client.call_tool("submit_task", {"goal": "Plain"}))
        assert answer["state"] == "queued"
        await client.call_tool("cancel_task", {"task_id": answer["task_id"]})


async def test_a_restart_between_submit_and_result_loses_nothing(env: Env, tmp_path: Path) -> None:
    env.use(QUESTION)
    d = start_daemon(tmp_path / "home", env.sim.url)
    try:
        first = User()  # declares elicitation; never called: nothing is answered before
        async with mcp_client(d, extensions=[TasksClient()], elicitation_callback=first) as client:
            handle = await submit(client, "A note", options={"approval": "required"})
            asked = await poll(client.session, handle.task_id, {"input_required"})
        d.stop()
        d.start(timeout=120)
        user = User()
        async with mcp_client(d, extensions=[TasksClient()], elicitation_callback=user) as client:
            after = await get_task(client.session, handle.task_id)
            assert after.status == "input_required" and after.created_at == handle.created_at
            before = the_request(asked)[1]["requestedSchema"]
            assert the_request(after)[1]["requestedSchema"] == before
            done = await follow_task(client.session, handle.task_id, 0.2)
        assert done.status == "completed" and done.result is not None
        assert (
            done.result["structuredContent"]["result"]
            == d.rpc("task/get", {"task_id": handle.task_id})["result"]["result"]
        )
        assert len(user.asked) == 2 and not first.asked  # the questions, then the approval
    finally:
        d.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_wait_task_asks_the_user_and_records_the_answers(env: Env, mode: str) -> None:
    """2026-07-28: the form rides an InputRequiredResult; 2025-11-25: an elicitation/create
    request sent while the call is open. The same form, recorded the same way."""
    env.use(QUESTION)
    user = User()
    async with mcp_client(env.d, mode=mode, elicitation_callback=user) as client:
        args = {"goal": "A note", "options": {"approval": "required"}}
        task_id = structured(await client.call_tool("submit_task", args))["task_id"]
        replies = []
        for _ in range(200):
            progress = structured(await client.call_tool("wait_task", {"task_id": task_id}))
            replies.append(progress["human_reply"])
            if progress["state"] == "completed":
                break
        assert progress["state"] == "completed", progress
    assert "the user answered" in " ".join(r for r in replies if r)
    assert "the user chose approve" in replies
    assert [sorted(p.requested_schema["properties"]) for p in user.asked][1] == [
        "comment",
        "decision",
    ]
    assert env.task(task_id)["questions"][0]["answer"] == "EMEA"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_declined_form_in_wait_task_records_nothing(env: Env, mode: str) -> None:
    env.use(QUESTION)
    user = User(decline_first=True)
    async with mcp_client(env.d, mode=mode, elicitation_callback=user) as client:
        task_id = structured(await client.call_tool("submit_task", {"goal": "A note"}))["task_id"]
        progress: dict[str, Any] = {}
        while not user.asked:
            progress = structured(await client.call_tool("wait_task", {"task_id": task_id}))
        assert progress["state"] == "input_required"
        assert "declined" in progress["human_reply"]
        (question,) = env.task(task_id)["questions"]
        assert question["answer"] is None and env.task(task_id)["state"] == "input_required"
        await client.call_tool("cancel_task", {"task_id": task_id})


async def test_no_answer_within_the_bound_ends_the_call_and_records_nothing(env: Env) -> None:
    """The 2025-11-25 form is open while the call is: the user's reading counts against the
    bound, and a form left unanswered ends the call at the bound."""
    env.use(QUESTION)
    asked = anyio.Event()

    async def away(ctx: ClientRequestContext, params: Any) -> types.ElicitResult:
        asked.set()
        await anyio.sleep(600)
        return types.ElicitResult(action="cancel")

    async with mcp_client(env.d, mode="legacy", elicitation_callback=away) as client:
        task_id = structured(await client.call_tool("submit_task", {"goal": "A note"}))["task_id"]
        progress: dict[str, Any] = {}
        while not asked.is_set():
            progress = structured(await client.call_tool("wait_task", {"task_id": task_id}))
        assert progress["state"] == "input_required", progress
        # The form was given what was left of the bound, never more.
        given = re.search(r"no answer within (\d+) s", progress["human_reply"])
        assert given is not None, progress
        assert 0 < int(given.group(1)) <= BOUND_S
        assert env.task(task_id)["questions"][0]["answer"] is None
        await client.call_tool("cancel_task", {"task_id": task_id})


FEATURE = HALF
CODE = adds_half(FAST)


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


async def test_a_code_task_is_approved_with_its_change_and_its_result_has_the_diff(
    env: Env, tmp_path: Path
) -> None:
    env.use(CODE)
    repo = make_repo(tmp_path / "repo")
    user = User(apply="branch")
    tasks = TasksClient()
    async with mcp_client(env.d, extensions=[tasks], elicitation_callback=user) as client:
        args = {"goal": "Add half()", "repo": str(repo), "options": {"approval": "required"}}
        answer = structured(await client.call_tool("submit_task", args))
    (approval,) = user.asked
    assert "apply" in approval.requested_schema["properties"]
    assert "src/feature.py (+2 -0)" in approval.message
    assert answer["state"] == "completed"
    assert [f["path"] for f in answer["diff"]["files"]] == ["src/feature.py"]
    assert "+def half(x):" in answer["diff"]["patch"]
    tierd = env.task(answer["task_id"])
    assert tierd["code"]["applied"]["how"] == "branch"
