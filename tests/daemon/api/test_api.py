"""The HTTP API against a real daemon process: JSON-RPC to the letter, REST, auth and guards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import CHEAP, PREMIUM
from support.daemon import DaemonProcess, daemon_on_simulator, wait_for
from support.postgres import PASSWORD, on_postgres
from support.simulator import SLOW_MODELS


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), SLOW_MODELS) as d:
        yield d


def post_raw(d: DaemonProcess, body: bytes | str, **headers: str) -> httpx.Response:
    with d.http() as h:
        return h.post("/rpc", content=body, headers={"content-type": "application/json", **headers})


def submit(d: DaemonProcess, goal: str = "Prepare the follow-up for a lead") -> str:
    reply = d.rpc("task/submit", {"goal": goal})
    assert "result" in reply, reply
    return reply["result"]["task_id"]


# --- JSON-RPC 2.0 ------------------------------------------------------------------------------


def test_parse_error(daemon: DaemonProcess) -> None:
    r = post_raw(daemon, b'{"jsonrpc": "2.0", "method": ')
    assert r.status_code == 200
    doc = r.json()
    assert doc["error"]["code"] == -32700 and doc["id"] is None
    assert "detail" in doc["error"]["data"]


def test_empty_batch_is_one_invalid_request(daemon: DaemonProcess) -> None:
    doc = post_raw(daemon, "[]").json()
    assert isinstance(doc, dict)
    assert doc["error"]["code"] == -32600 and doc["id"] is None


def test_notifications_get_no_reply(daemon: DaemonProcess) -> None:
    single = post_raw(daemon, '{"jsonrpc": "2.0", "method": "daemon/status"}')
    assert single.status_code == 204 and single.content == b""
    batch = post_raw(
        daemon,
        '[{"jsonrpc": "2.0", "method": "daemon/status"},'
        ' {"jsonrpc": "2.0", "method": "task/list", "params": {}}]',
    )
    assert batch.status_code == 204 and batch.content == b""


def test_mixed_batch_answers_each_call_with_its_id(daemon: DaemonProcess) -> None:
    body = (
        '[{"jsonrpc": "2.0", "id": "str-id", "method": "daemon/status"},'
        ' {"jsonrpc": "2.0", "method": "daemon/status"},'
        ' {"jsonrpc": "2.0", "id": 7, "method": "no/such"},'
        ' {"jsonrpc": "2.0", "id": 8.5, "method": "task/get", "params": {"task_id": 5}},'
        ' {"foo": "boo"},'
        " 1,"
        ' {"jsonrpc": "1.0", "id": 9, "method": "daemon/status"}]'
    )
    doc = post_raw(daemon, body).json()
    assert isinstance(doc, list) and len(doc) == 6  # the notification got nothing
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for reply in doc:
        by_id.setdefault(reply["id"], []).append(reply)
    assert by_id["str-id"][0]["result"]["version"]
    assert by_id[7][0]["error"]["code"] == -32601
    assert by_id[7][0]["error"]["data"]["method"] == "no/such"
    assert by_id[8.5][0]["error"]["code"] == -32602
    assert by_id[8.5][0]["error"]["data"][0]["field"] == "task_id"
    assert by_id[9][0]["error"]["code"] == -32600
    nulls = by_id[None]
    assert [r["error"]["code"] for r in nulls] == [-32600, -32600]


def test_wrong_param_types_name_the_field(daemon: DaemonProcess) -> None:
    reply = daemon.rpc("task/submit", {"goal": 42})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"][0]["field"] == "goal"
    reply = daemon.rpc("task/list", {"limit": "many"})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"][0]["field"] == "limit"
    reply = daemon.rpc("task/submit", ["positional"])
    assert reply["error"]["code"] == -32602
    reply = daemon.rpc("task/submit", {"goal": "x", "bogus": 1})
    assert reply["error"]["data"][0]["field"] == "bogus"


def test_unknown_method(daemon: DaemonProcess) -> None:
    reply = daemon.rpc("task/explode", {}, id_=None)
    assert reply["id"] is None and reply["error"]["code"] == -32601


def test_submit_get_list_cancel_over_rpc(daemon: DaemonProcess) -> None:
    task_id = submit(daemon)
    got = daemon.rpc("task/get", {"task_id": task_id})["result"]
    assert got["id"] == task_id and got["goal"].startswith("Prepare")
    for field in ("state", "created_at", "updated_at", "streams", "result", "report", "error"):
        assert field in got
    listed = daemon.rpc("task/list", {"limit": 500})["result"]["tasks"]
    assert task_id in [t["id"] for t in listed]
    canceled = daemon.rpc("task/cancel", {"task_id": task_id})["result"]
    assert canceled["state"] == "canceled"
    got = daemon.rpc("task/get", {"task_id": task_id})["result"]
    assert got["state"] == "canceled" and got["report"]["state"] == "canceled"
    again = daemon.rpc("task/cancel", {"task_id": task_id})
    assert again["error"]["code"] == -32002
    assert again["error"]["data"]["state"] == "canceled"
    missing = daemon.rpc("task/get", {"task_id": "nope"})
    assert missing["error"]["code"] == -32001


def test_list_is_paged(daemon: DaemonProcess) -> None:
    ids = {submit(daemon, f"goal {i}") for i in range(3)}
    first = daemon.rpc("task/list", {"limit": 2})["result"]
    assert len(first["tasks"]) == 2 and first["next_cursor"]
    second = daemon.rpc("task/list", {"limit": 2, "cursor": first["next_cursor"]})["result"]
    seen = [t["id"] for t in first["tasks"] + second["tasks"]]
    assert len(seen) == len(set(seen))
    assert ids <= set(seen) | {
        t["id"] for t in daemon.rpc("task/list", {"limit": 500})["result"]["tasks"]
    }


def test_a_repeated_single_valued_query_parameter_is_a_422_naming_it(
    daemon: DaemonProcess,
) -> None:
    """FastAPI would keep the last value and serve the request; the first was never looked at."""
    task_id = submit(daemon, "Repeated parameters")
    with daemon.http() as h:
        for path, name in (
            (f"/v1/tasks?cursor={'x' * 80}&cursor=t0", "cursor"),
            ("/v1/tasks?limit=1&limit=2", "limit"),
            (f"/v1/tasks/{task_id}/events?after=1&after=2", "after"),
        ):
            r = h.get(path, headers={"Accept": "application/json"})
            assert r.status_code == 422, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == -32602 and error["data"]["field"] == name, (path, error)
        # A list parameter may repeat; one given once is served as before.
        assert h.get("/v1/tasks?state=planning&state=queued&limit=5").status_code == 200
        assert h.get("/v1/tasks?limit=5").status_code == 200


def test_status_and_discover(daemon: DaemonProcess) -> None:
    status = daemon.rpc("daemon/status")["result"]
    assert status["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    # The store's URL, its password hidden (on PostgreSQL with TIERD_TEST_STORE=postgres).
    assert status["store"].startswith("postgresql" if on_postgres() else "sqlite:///")
    assert PASSWORD not in status["store"]
    assert set(status["tasks"]) >= {"queued", "completed", "canceled"}
    assert status["concurrency"]["ceiling"] >= 1
    doc = daemon.rpc("rpc/discover")["result"]
    names = {m["name"] for m in doc["methods"]}
    assert {
        "task/submit",
        "task/get",
        "task/list",
        "task/cancel",
        "task/answer",
        "task/approve",
        "daemon/status",
        "config/get",
        "config/set",
        "rpc/discover",
    } <= names
    submit_m = next(m for m in doc["methods"] if m["name"] == "task/submit")
    goal = next(p for p in submit_m["params"] if p["name"] == "goal")
    assert goal["required"] is True


def test_status_gives_each_roles_model_and_price(daemon: DaemonProcess) -> None:
    # Prices come from litellm's bundled table once the engine has loaded (in the background).
    models = wait_for(lambda: daemon.rpc("daemon/status")["result"]["models"], 60)
    assert models["planner"]["model"] == PREMIUM and models["executor"]["model"] == CHEAP
    premium, cheap = models["planner"], models["executor"]
    assert 0 < cheap["input_usd_per_mtok"] < premium["input_usd_per_mtok"]
    assert 0 < cheap["output_usd_per_mtok"] < premium["output_usd_per_mtok"]


def test_overlong_goal_names_the_field(daemon: DaemonProcess) -> None:
    reply = daemon.rpc("task/submit", {"goal": "x" * 20001})
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "goal"
    with daemon.http() as h:
        r = h.post("/v1/tasks", json={"goal": "g", "context": "c" * 200001})
    assert r.status_code == 422 and "context" in r.json()["error"]["message"]


# --- REST --------------------------------------------------------------------------------------


def test_rest_round_trip(daemon: DaemonProcess) -> None:
    with daemon.http() as h:
        r = h.post("/v1/tasks", json={"goal": "Draft a launch plan"})
        assert r.status_code == 202
        task_id = r.json()["task_id"]
        assert h.get(f"/v1/tasks/{task_id}").json()["id"] == task_id
        assert task_id in [
            t["id"] for t in h.get("/v1/tasks", params={"limit": 500}).json()["tasks"]
        ]
        assert h.post(f"/v1/tasks/{task_id}/cancel").json()["state"] == "canceled"
        conflict = h.post(f"/v1/tasks/{task_id}/cancel")
        assert conflict.status_code == 409 and "canceled" in conflict.json()["error"]["message"]
        assert h.get("/v1/tasks/nope").status_code == 404
        missing = h.post("/v1/tasks", json={"context": "no goal"})
        assert missing.status_code == 422 and "goal" in missing.json()["error"]["message"]
        assert h.get("/v1/status").json()["version"]
        openapi = h.get("/openapi.json").json()
        assert "/v1/tasks" in openapi["paths"]


# --- security ----------------------------------------------------------------------------------


def test_token_required_except_healthz(daemon: DaemonProcess) -> None:
    with httpx.Client(base_url=daemon.url) as h:
        assert h.get("/healthz").status_code == 200
        assert h.get("/v1/status").status_code == 401
        wrong = h.get("/v1/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (
            h.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "daemon/status"}).status_code
            == 401
        )
        in_query = h.get("/v1/status", params={"token": daemon.token})
        assert in_query.status_code == 401 and "query string" in in_query.json()["error"]["message"]
        right = h.get("/v1/status", headers={"Authorization": f"Bearer {daemon.token}"})
        assert right.status_code == 200


def test_foreign_host_and_origin_rejected(daemon: DaemonProcess) -> None:
    with daemon.http() as h:
        assert h.get("/v1/status", headers={"Host": "evil.example:80"}).status_code == 421
        assert h.get("/v1/status", headers={"Host": "localhost:1"}).status_code == 200
        assert h.get("/v1/status", headers={"Host": "[::1]:1"}).status_code == 200
        r = h.get("/v1/status", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403


def test_oversized_body_is_413(daemon: DaemonProcess) -> None:
    big = (
        '{"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": {"goal": "'
        + "x" * (1024 * 1024 + 10)
        + '"}}'
    )
    assert post_raw(daemon, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap still holds
        for _ in range(20):
            yield b"x" * 65536

    with daemon.http() as h:
        assert h.post("/rpc", content=chunks()).status_code == 413


def test_config_set_reaches_the_daemon(daemon: DaemonProcess) -> None:
    reply = daemon.rpc("config/set", {"key": "rules.parallelize", "value": "sideways"})
    assert reply["error"]["code"] == -32602 and "when-possible" in reply["error"]["message"]
    reply = daemon.rpc("config/set", {"key": "rules.nope", "value": 1})
    assert (
        reply["error"]["code"] == -32602 and "unknown key 'rules.nope'" in reply["error"]["message"]
    )
    ok = daemon.rpc("config/set", {"key": "concurrency.ceiling", "value": 7})["result"]
    assert ok["value"] == 7
    assert daemon.rpc("daemon/status")["result"]["concurrency"]["ceiling"] == 7
    assert daemon.rpc("config/get", {"key": "concurrency.ceiling"})["result"]["value"] == 7


def test_bad_task_option_value_names_the_option(daemon: DaemonProcess) -> None:
    reply = daemon.rpc("task/submit", {"goal": "x", "options": {"instructions": [""]}})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["field"] == "options.instructions"


def test_an_internal_error_is_answered_plainly_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In process: a method that raises answers -32603 without a traceback on the wire, and
    its traceback goes to the log (the daemon's stderr), where the fuzz tests look for it."""
    import asyncio
    import logging

    from daemon.api.rpc import RpcDispatcher

    class Broken:
        async def get(self, params: Any) -> Any:
            raise RuntimeError("a bug in task/get")

    dispatcher = RpcDispatcher(Broken())  # type: ignore[arg-type]
    request = {"jsonrpc": "2.0", "id": 7, "method": "task/get", "params": {"task_id": "t1"}}
    with caplog.at_level(logging.ERROR, logger="tierd.rpc"):
        reply = asyncio.run(dispatcher.handle_body(json.dumps(request).encode()))
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error", "data": {"type": "RuntimeError"}},
        "id": 7,
    }
    (record,) = [r for r in caplog.records if r.name == "tierd.rpc"]
    assert "task/get" in record.getMessage() and record.exc_info is not None
    assert "a bug in task/get" in caplog.text and "Traceback" in caplog.text
