"""Idempotent submit: a client whose submit answer was lost resubmits with the same key and
gets the task it already made, never a second one (JSON-RPC and REST, across SIGKILL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import DaemonProcess, daemon_on_simulator, write_config
from support.simulator import SLOW_MODELS, running_simulator


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), SLOW_MODELS) as d:
        yield d


def _key() -> str:
    return f"test-{uuid.uuid4()}"


def _rest(d: DaemonProcess, body: dict[str, Any], **headers: str) -> httpx.Response:
    with d.http() as h:
        return h.post("/v1/tasks", json=body, headers=headers)


def _tasks_with_goal(d: DaemonProcess, goal: str) -> list[dict[str, Any]]:
    reply = d.rpc("task/list", {"limit": 500})
    return [t for t in reply["result"]["tasks"] if t["goal"] == goal]


def test_rpc_same_key_twice_is_one_task(daemon: DaemonProcess) -> None:
    key, goal = _key(), "Idempotent over JSON-RPC"
    first = daemon.rpc("task/submit", {"goal": goal, "idempotency_key": key})["result"]
    assert "duplicate" not in first
    second = daemon.rpc("task/submit", {"goal": goal, "idempotency_key": key})["result"]
    assert second["task_id"] == first["task_id"] and second["duplicate"] is True
    assert second["state"] in {"queued", "planning"}  # its current state, not a new one
    assert [t["id"] for t in _tasks_with_goal(daemon, goal)] == [first["task_id"]]
    # Without a key the same goal is a new task: keys, not goals, say what is a retry.
    third = daemon.rpc("task/submit", {"goal": goal})["result"]
    assert third["task_id"] != first["task_id"]


def test_rest_body_and_header_keys_name_the_same_task(daemon: DaemonProcess) -> None:
    key, goal = _key(), "Idempotent over REST"
    first = _rest(daemon, {"goal": goal, "idempotency_key": key})
    assert first.status_code == 202, first.text
    by_header = _rest(daemon, {"goal": goal}, **{"Idempotency-Key": key})
    assert by_header.status_code == 202, by_header.text
    assert by_header.json() == {
        **first.json(),
        "state": by_header.json()["state"],
        "duplicate": True,
    }
    both = _rest(daemon, {"goal": goal, "idempotency_key": key}, **{"Idempotency-Key": key})
    assert both.json()["task_id"] == first.json()["task_id"]
    differ = _rest(
        daemon, {"goal": goal, "idempotency_key": key}, **{"Idempotency-Key": key + "-other"}
    )
    assert differ.status_code == 422
    assert differ.json()["error"]["data"]["field"] == "idempotency_key"
    assert len(_tasks_with_goal(daemon, goal)) == 1


def test_concurrent_same_key_submits_make_one_task(daemon: DaemonProcess) -> None:
    key, goal = _key(), "Idempotent under a burst of retries"
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    go = threading.Barrier(12)

    def submit(n: int) -> None:
        go.wait()
        if n % 2:
            reply = _rest(daemon, {"goal": goal, "idempotency_key": key}).json()
        else:
            reply = daemon.rpc("task/submit", {"goal": goal, "idempotency_key": key})["result"]
        with lock:
            answers.append(reply)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 12, answers
    assert len({a["task_id"] for a in answers}) == 1
    assert sum(1 for a in answers if not a.get("duplicate")) == 1  # exactly one created it
    assert len(_tasks_with_goal(daemon, goal)) == 1


def test_same_key_for_another_request_is_refused_naming_the_field(daemon: DaemonProcess) -> None:
    key, goal = _key(), "The original request"
    task_id = daemon.rpc("task/submit", {"goal": goal, "idempotency_key": key})["result"]["task_id"]
    for params in (
        {"goal": "Another goal"},
        {"goal": goal, "context": "other context"},
        {"goal": goal, "options": {"approval": "required"}},
    ):
        err = daemon.rpc("task/submit", {**params, "idempotency_key": key})["error"]
        assert err["code"] == -32602, err
        assert err["data"] == {"field": "idempotency_key", "task_id": task_id}
        assert "already used for another request" in err["message"]
    r = _rest(daemon, {"goal": "Another goal", "idempotency_key": key})
    assert r.status_code == 422 and r.json()["error"]["data"]["field"] == "idempotency_key"
    assert "already used for another request" in r.json()["error"]["message"]
    assert _tasks_with_goal(daemon, "Another goal") == []
    assert len(_tasks_with_goal(daemon, goal)) == 1


def test_malformed_key_is_refused_naming_the_field(daemon: DaemonProcess) -> None:
    for key in ["", "x" * 129, "has space", "tab\there", "nul\x00", "é", 5, True]:
        err = daemon.rpc("task/submit", {"goal": "Bad key", "idempotency_key": key})["error"]
        assert err["code"] == -32602 and err["data"][0]["field"] == "idempotency_key", err
        r = _rest(daemon, {"goal": "Bad key", "idempotency_key": key})
        assert r.status_code == 422, (key, r.text)
        assert r.json()["error"]["data"][0]["field"] == "idempotency_key"
    r = _rest(daemon, {"goal": "Bad key"}, **{"Idempotency-Key": "x" * 129})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]["message"]
    assert _tasks_with_goal(daemon, "Bad key") == []


def test_key_is_documented_in_openapi_and_rpc_discover(daemon: DaemonProcess) -> None:
    with daemon.http() as h:
        spec = h.get("/openapi.json").json()
    prop = spec["components"]["schemas"]["SubmitParams"]["properties"]["idempotency_key"]
    assert "duplicate" in prop["description"]
    params = spec["paths"]["/v1/tasks"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params)
    doc = daemon.rpc("rpc/discover")["result"]
    (submit,) = [m for m in doc["methods"] if m["name"] == "task/submit"]
    assert "idempotency_key" in str(submit)


def test_cli_client_sends_a_fresh_key_per_submit(daemon: DaemonProcess) -> None:
    goal = "Submitted by the stdlib client"
    with daemon.client() as client:
        a, b = client.submit(goal), client.submit(goal)  # two submits, two tasks
        again = client.submit(goal, idempotency_key="client-key-1")
        retry = client.submit(goal, idempotency_key="client-key-1")
    assert a["task_id"] != b["task_id"]
    assert retry == {**again, "state": retry["state"], "duplicate": True}
    assert len(_tasks_with_goal(daemon, goal)) == 3


def test_key_survives_sigkill_and_restart_and_a_retry_is_not_refused_as_busy(
    home: Path, daemon_factory: Any
) -> None:
    goal = "Kept across a SIGKILL"
    with running_simulator(SLOW_MODELS) as sim:
        # One active task at most: a second task is refused busy, a retry of the first not.
        write_config(home, sim.url, "[limits]\nmax_active_tasks = 1\n")
        d = daemon_factory().start()
        first = d.rpc("task/submit", {"goal": goal, "idempotency_key": "k-kill"})["result"]
        d.kill()  # right after the answer: the key must already be durable

        d = daemon_factory().start()
        again = _rest(d, {"goal": goal}, **{"Idempotency-Key": "k-kill"})
        assert again.status_code == 202, again.text
        assert again.json()["task_id"] == first["task_id"] and again.json()["duplicate"]
        other = _rest(d, {"goal": "A second task", "idempotency_key": "k-other"})
        assert other.status_code == 429, other.text  # the limit is really full...
        retry = d.rpc("task/submit", {"goal": goal, "idempotency_key": "k-kill"})
        assert retry["result"]["task_id"] == first["task_id"]  # ...and a retry still passes
        d.stop()

        d = daemon_factory().start()  # and after a clean restart
        last = d.rpc("task/submit", {"goal": goal, "idempotency_key": "k-kill"})["result"]
        assert last["task_id"] == first["task_id"] and last["duplicate"] is True
        tasks = d.rpc("task/list", {})["result"]["tasks"]
        assert [t["id"] for t in tasks] == [first["task_id"]]
