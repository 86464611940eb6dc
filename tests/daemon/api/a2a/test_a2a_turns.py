"""A2A conversations with tierd: which task a message continues, what it refuses, and the wire.

A real daemon subprocess with the a2a-sdk client, models from tierd's simulator over real HTTP.
A task's contextId is its tierd task id, kept in tierd's store: a message that names it
continues that task, across daemon restarts too.
"""

from __future__ import annotations

import json

import httpx
import pytest
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import (
    ContentTypeNotSupportedError,
    InvalidParamsError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from a2a_kit import Q_A, QUESTION, TWO, Env, a2a_client, collect, request

pytestmark = pytest.mark.slow

INPUT = TaskState.TASK_STATE_INPUT_REQUIRED
COMPLETED = TaskState.TASK_STATE_COMPLETED
VERSION = {"A2A-Version": "1.0"}


def _task_ids(env: Env) -> list[str]:
    return [t["id"] for t in env.d.rpc("task/list", {"limit": 500})["result"]["tasks"]]


def _wire(
    env: Env, *, path: str = "/a2a", content_type: str = "application/json"
) -> httpx.Response:
    """A ListTasks call as bytes on the wire, to `path` with this Content-Type."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ListTasks", "params": {}})
    headers = {"Authorization": f"Bearer {env.d.token}", "Content-Type": content_type, **VERSION}
    with httpx.Client(base_url=env.d.url, timeout=30) as h:
        return h.post(path, content=body, headers=headers)


async def test_a_context_id_continues_its_task_after_a_restart(env: Env) -> None:
    env.use(QUESTION)
    async with a2a_client(env.d) as client:
        (first,) = await collect(client.send_message(request("A note to go on by context")))
    task = first.task
    assert task.status.state == INPUT and Q_A in task.status.message.parts[0].text
    assert task.context_id == task.id  # the context id is the task's id, in the store
    before = _task_ids(env)

    env.restart()
    async with a2a_client(env.d) as client:
        (answered,) = await collect(client.send_message(request("EMEA", context_id=task.id)))
    assert answered.task.id == task.id and answered.task.context_id == task.id
    assert answered.task.status.state == COMPLETED, answered.task.status
    tierd = env.d.rpc("task/get", {"task_id": task.id})["result"]
    assert [q["answer"] for q in tierd["questions"]] == ["EMEA"]
    assert _task_ids(env) == before  # the answer started no task of its own


async def test_messages_tierd_cannot_take_are_refused_and_start_nothing(env: Env) -> None:
    env.use(TWO)
    async with a2a_client(env.d) as client:
        (done,) = await collect(client.send_message(request("A short note")))
        task = done.task
        assert task.status.state == COMPLETED
        before = _task_ids(env)
        with pytest.raises(InvalidParamsError, match="not a tierd context"):
            await collect(client.send_message(request("More", context_id="ctx-of-my-own")))
        with pytest.raises(InvalidParamsError, match=f"not task {task.id}'s context"):
            await collect(
                client.send_message(request("More", task_id=task.id, context_id="another"))
            )
        with pytest.raises(UnsupportedOperationError, match="completed: it takes no more"):
            await collect(client.send_message(request("More", task_id=task.id)))
        with pytest.raises(UnsupportedOperationError, match="completed: it takes no more"):
            await collect(client.send_message(request("More", context_id=task.id)))
        # The service takes a unique prefix for people; an A2A id is whole or names no task.
        with pytest.raises(TaskNotFoundError):
            await collect(client.send_message(request("More", task_id=task.id[:8])))
        png = Message(
            message_id="m-png",
            role=Role.ROLE_USER,
            parts=[Part(text="Describe this"), Part(raw=b"\x89PNG", media_type="image/png")],
        )
        with pytest.raises(ContentTypeNotSupportedError, match="image/png"):
            await collect(client.send_message(SendMessageRequest(message=png)))
    assert _task_ids(env) == before


async def test_a_resent_message_names_its_task_and_a_reused_id_starts_another(env: Env) -> None:
    env.use(TWO)
    async with a2a_client(env.d) as client:
        (first,) = await collect(client.send_message(request("Note one", message_id="m-same")))
        (again,) = await collect(client.send_message(request("Note one", message_id="m-same")))
        (other,) = await collect(client.send_message(request("Note two", message_id="m-same")))
    assert again.task.id == first.task.id  # a retry of the same message
    assert other.task.id != first.task.id  # another message under a reused id
    assert env.d.rpc("task/get", {"task_id": other.task.id})["result"]["goal"] == "Note two"


async def test_referenced_tasks_come_in_as_background(env: Env) -> None:
    env.use(TWO)
    async with a2a_client(env.d) as client:
        (earlier,) = await collect(client.send_message(request("Research the market")))
        (later,) = await collect(
            client.send_message(request("Now draft the note", references=[earlier.task.id]))
        )
        with pytest.raises(TaskNotFoundError):
            await collect(client.send_message(request("Draft", references=["t-unknown"])))
    assert later.task.id != earlier.task.id
    done = env.d.rpc("task/get", {"task_id": earlier.task.id})["result"]
    context = env.d.rpc("task/get", {"task_id": later.task.id})["result"]["context"]
    assert f"Earlier task {earlier.task.id}" in context and "Research the market" in context
    assert done["result"] in context


async def test_history_length_and_a_context_filter_shape_the_answers(env: Env) -> None:
    env.use(QUESTION)
    async with a2a_client(env.d) as client:
        (bare,) = await collect(client.send_message(request("A note", history_length=0)))
        assert bare.task.status.state == INPUT and list(bare.task.history) == []
        listed = await client.list_tasks(ListTasksRequest(context_id=bare.task.id))
        assert [t.id for t in listed.tasks] == [bare.task.id]
        assert listed.next_page_token == ""
        none = await client.list_tasks(ListTasksRequest(context_id="ctx-nobody-has"))
        assert list(none.tasks) == []


async def test_whole_numbers_in_data_reach_tierd_as_integers(env: Env) -> None:
    env.use(TWO)
    sent = request("A note in two parts at most")
    sent.message.parts.append(Part())
    sent.message.parts[-1].data.struct_value.update({"tierd": {"options": {"max_streams": 2}}})
    async with a2a_client(env.d) as client:
        (done,) = await collect(client.send_message(sent))
    options = env.d.rpc("task/get", {"task_id": done.task.id})["result"]["options"]
    assert options == {"max_streams": 2}


def test_the_wire_takes_json_only_and_a_trailing_slash(env: Env) -> None:
    text = _wire(env, content_type="text/plain")
    assert text.json()["error"]["code"] == -32005, text.text
    slash = _wire(env, path="/a2a/")
    assert slash.status_code == 200 and "tasks" in slash.json()["result"], slash.text
    # A body that is not JSON is JSON-RPC's parse error from the A2A dispatcher, on both paths,
    # not the REST layer's 400.
    headers = {"Authorization": f"Bearer {env.d.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=env.d.url, timeout=30) as h:
        for path in ("/a2a", "/a2a/"):
            bad = h.post(
                path, content=b'{"jsonrpc": "2.0", "id": 1,', headers={**headers, **VERSION}
            )
            body = bad.json()
            assert body.get("jsonrpc") == "2.0" and body["error"]["code"] == -32700, bad.text


def test_the_card_is_cacheable(env: Env) -> None:
    with httpx.Client(base_url=env.d.url, timeout=10) as h:
        first = h.get("/.well-known/agent-card.json")
        assert "max-age=" in first.headers["cache-control"]
        assert first.headers["last-modified"]
        etag = first.headers["etag"]
        again = h.get("/.well-known/agent-card.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag
        other = h.get("/.well-known/agent-card.json", headers={"If-None-Match": '"stale"'})
        assert other.status_code == 200 and other.json()["name"] == "tierd"
