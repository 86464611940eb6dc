"""A2A v1.0 at /a2a and the agent card, driven by the a2a-sdk client.

A real daemon subprocess, models from tierd's simulator over real HTTP; A2A tasks are tierd's.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError
from a2a_kit import FAST, Q_A, QUESTION, TWO, Env, a2a_client, collect, request
from google.protobuf.timestamp_pb2 import Timestamp
from support.daemon import task_of, wait_for

pytestmark = pytest.mark.slow

SLOW = {"latency": {"planner": 60.0, "orchestrator": 60.0, "executor": 60.0}}
WORKING = TaskState.TASK_STATE_WORKING
INPUT = TaskState.TASK_STATE_INPUT_REQUIRED
COMPLETED = TaskState.TASK_STATE_COMPLETED
CANCELED = TaskState.TASK_STATE_CANCELED


def test_the_agent_card_describes_skills_rpc_streaming_and_bearer(env: Env) -> None:
    with env.d.http() as h:
        card = h.get("/.well-known/agent-card.json").json()
    assert card["name"] == "tierd" and card["capabilities"]["streaming"] is True
    (interface,) = card["supportedInterfaces"]
    assert interface["url"] == f"{env.d.url}/a2a"
    assert interface["protocolBinding"] == "JSONRPC" and interface["protocolVersion"] == "1.0"
    assert {s["id"] for s in card["skills"]} == {"team-task", "code-task"}
    scheme = card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]
    assert scheme["scheme"] == "Bearer"
    assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]


async def test_send_answer_approve_and_the_result(env: Env) -> None:
    env.use(QUESTION)
    async with a2a_client(env.d) as client:
        (first,) = await collect(
            client.send_message(
                request(
                    "Write a short market note",
                    metadata={"tierd": {"options": {"approval": "required"}}},
                )
            )
        )
        task = first.task
        assert task.status.state == INPUT, task.status
        assert Q_A in task.status.message.parts[0].text
        tierd = env.d.rpc("task/get", {"task_id": task.id})["result"]
        assert tierd["state"] == "input_required"  # the same task, in tierd's store

        (answered,) = await collect(client.send_message(request("EMEA", task_id=task.id)))
        assert answered.task.status.state == INPUT  # now the approval
        assert "approve" in answered.task.status.message.parts[0].text
        assert answered.task.artifacts[0].parts[0].text  # the result to approve

        (approved,) = await collect(client.send_message(request("approve", task_id=task.id)))
        done = approved.task
        assert done.status.state == COMPLETED, done.status
        result = env.d.rpc("task/get", {"task_id": task.id})["result"]
        assert result["state"] == "completed"
        assert done.artifacts[0].parts[0].text == result["result"]
        assert [q["answer"] for q in result["questions"]] == ["EMEA"]

        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == COMPLETED and got.id == task.id
        assert [m.parts[0].text for m in got.history][-1] == "EMEA"
        listed = await client.list_tasks(ListTasksRequest(status=COMPLETED))
        assert task.id in [t.id for t in listed.tasks]
        # total_size counts what the filter matches on every page, not this page.
        for goal in ("Spare one", "Spare two"):
            spare = env.d.rpc("task/submit", {"goal": goal})["result"]["task_id"]
            env.d.rpc("task/cancel", {"task_id": spare})
        everything = env.d.rpc("task/list", {"limit": 500})["result"]["tasks"]
        first = await client.list_tasks(ListTasksRequest(page_size=1))
        assert len(first.tasks) == 1 and first.total_size == len(everything) >= 3
        canceled = sum(t["state"] == "canceled" for t in everything)
        some = await client.list_tasks(ListTasksRequest(status=CANCELED, page_size=1))
        assert len(some.tasks) == 1 and some.total_size == canceled >= 2


async def test_list_tasks_goes_by_last_update_page_by_page_and_filters_by_time(env: Env) -> None:
    env.use(SLOW)  # the tasks stay in planning: only the cancel below changes a state
    ids = [env.d.rpc("task/submit", {"goal": f"Listed {n}"})["result"]["task_id"] for n in range(3)]
    for task_id in ids:  # planning, where the 60 s planner keeps them
        wait_for(
            lambda t=task_id: env.d.rpc("task/get", {"task_id": t})["result"]["state"] == "planning"
        )
    await asyncio.sleep(0.05)
    since = time.time()
    env.d.rpc("task/cancel", {"task_id": ids[0]})  # the oldest changes last
    everything = env.d.rpc("task/list", {"limit": 500})["result"]["tasks"]
    by_update = [t["id"] for t in sorted(everything, key=lambda t: (t["updated_at"], t["id"]))]
    async with a2a_client(env.d) as client:
        paged: list[str] = []
        token = ""
        while True:
            page = await client.list_tasks(ListTasksRequest(page_size=2, page_token=token))
            assert page.total_size == len(everything)
            paged += [t.id for t in page.tasks]
            if not page.next_page_token:
                break
            token = page.next_page_token
        assert paged == by_update[::-1]
        assert paged[0] == ids[0]  # canceled last, listed first, though submitted first
        stamp = Timestamp()
        stamp.FromNanoseconds(int(since * 1e9))
        recent = await client.list_tasks(ListTasksRequest(status_timestamp_after=stamp))
        found = [t.id for t in recent.tasks]
        assert ids[0] in found and ids[1] not in found and ids[2] not in found
        assert recent.total_size == len(found)
        for task_id in found:
            assert task_of(env.d, task_id)["updated_at"] >= since
        with pytest.raises(InvalidParamsError, match="page_token"):
            await client.list_tasks(ListTasksRequest(page_token="not-a-token"))
    for task_id in ids[1:]:
        env.d.rpc("task/cancel", {"task_id": task_id})


async def test_streaming_sends_status_and_the_result_artifact(env: Env) -> None:
    env.use(TWO)
    async with a2a_client(env.d, streaming=True) as client:
        events = await collect(client.send_message(request("Two part note")))
    assert events[0].HasField("task")
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[-1] == COMPLETED and WORKING in states
    artifacts = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
    assert artifacts and artifacts[0].artifact_id == "result"
    task_id = events[0].task.id
    assert (
        artifacts[0].parts[0].text
        == env.d.rpc("task/get", {"task_id": task_id})["result"]["result"]
    )


async def test_cancel_and_a_second_cancel_is_refused(env: Env) -> None:
    env.use(SLOW)
    async with a2a_client(env.d) as client:
        (first,) = await collect(client.send_message(request("Slow work", immediately=True)))
        assert first.task.status.state in {TaskState.TASK_STATE_SUBMITTED, WORKING}
        with pytest.raises(TaskNotFoundError):  # a prefix names no task over A2A
            await client.cancel_task(CancelTaskRequest(id=first.task.id[:10]))
        canceled = await client.cancel_task(CancelTaskRequest(id=first.task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError, match="already canceled"):
            await client.cancel_task(CancelTaskRequest(id=first.task.id))
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_a_task_survives_a_restart_and_a_resubscribe_follows_it(env: Env) -> None:
    env.use(QUESTION)
    async with a2a_client(env.d) as client:
        (first,) = await collect(client.send_message(request("A note for the restart")))
    task_id = first.task.id
    assert first.task.status.state == INPUT
    env.restart()
    # After the answer, the executor takes a while: the task is still at work at the next
    # restart, and a subscription made then must follow it to its end.
    env.use({**QUESTION, "latency": {**FAST, "executor": 6.0}})
    async with a2a_client(env.d) as client:
        got = await client.get_task(GetTaskRequest(id=task_id))
        assert got.status.state == INPUT and Q_A in got.status.message.parts[0].text
        (answered,) = await collect(
            client.send_message(request("EMEA", task_id=task_id, immediately=True))
        )
        assert answered.task.id == task_id and answered.task.status.state == WORKING
    env.restart()
    async with a2a_client(env.d, streaming=True) as client:
        events = await collect(client.subscribe(SubscribeToTaskRequest(id=task_id)))
    assert events[0].task.id == task_id and events[0].task.status.state == WORKING
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[-1] == COMPLETED
    done = env.d.rpc("task/get", {"task_id": task_id})["result"]
    assert done["state"] == "completed"


def test_wire_methods_and_a_wrong_token(env: Env) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    version = {"A2A-Version": "1.0"}
    with httpx.Client(base_url=env.d.url, timeout=10) as h:
        wrong = h.post("/a2a", json=body, headers={**version, "Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        ok = h.post(
            "/a2a", json=body, headers={**version, "Authorization": f"Bearer {env.d.token}"}
        )
        assert ok.status_code == 200 and "tasks" in ok.json()["result"], ok.text
        old = {**body, "method": "tasks/list"}
        gone = h.post(
            "/a2a", json=old, headers={**version, "Authorization": f"Bearer {env.d.token}"}
        )
        assert gone.json()["error"]["code"] == -32601


async def test_the_sdk_client_with_a_wrong_token_is_refused(env: Env) -> None:
    with pytest.raises(Exception, match="401"):
        async with a2a_client(env.d, token="wrong") as client:
            await client.get_task(GetTaskRequest(id="x"))
