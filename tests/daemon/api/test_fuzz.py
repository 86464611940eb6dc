"""Bad input against a real daemon: a JSON-RPC corpus, a REST corpus and schemathesis.

The tests share one daemon on a simulator whose models take a minute, so submitted tasks
stay live while the tests run. Whatever is sent, the answer must be a 4xx or a JSON-RPC
error that says what is wrong, never a 5xx or a traceback; afterwards the daemon still serves
and every task in the store is readable and in a valid state. The daemon's stderr goes to a
file, read at the end for tracebacks.

`TIERD_FUZZ_EXAMPLES` sets hypothesis' examples per operation and mode and the stateful
runs (default 8: about two hundred requests in CI); the long run is
`TIERD_FUZZ_EXAMPLES=300 .venv/bin/python -m pytest tests/daemon/test_fuzz.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from support.daemon import DaemonProcess, daemon_on_simulator
from support.simulator import SLOW_MODELS

from daemon.api.rpc import MAX_BATCH
from daemon.service.params import STATES

EXAMPLES = int(os.environ.get("TIERD_FUZZ_EXAMPLES", "8"))
VALID_STATES = set(STATES.__args__)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    # One daemon for the module (starting one costs seconds on a loaded machine); the
    # schemathesis tests, which may change its configuration, come last.
    home = tmp_path_factory.mktemp("home")
    # Logs in a file: a fuzzer's worth of them must not fill a pipe.
    with daemon_on_simulator(home, SLOW_MODELS, logs=home) as d:
        yield d


def post_rpc(h: httpx.Client, body: bytes) -> httpx.Response:
    r = h.post("/rpc", content=body, headers=JSON)
    assert r.status_code < 500, (body[:200], r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    return r


def assert_healthy(d: DaemonProcess, before: dict[str, Any]) -> None:
    """The daemon serves, the task from before is intact, every task is readable and valid."""
    with d.http() as h:
        status = h.get("/v1/status")
        assert status.status_code == 200 and status.json()["pid"] == d.proc.pid  # type: ignore[union-attr]
        got = h.get(f"/v1/tasks/{before['id']}").json()
        # Its planner is still waiting on the slow simulator: live, same goal, never failed.
        assert got["goal"] == before["goal"] and got["state"] not in ("failed", "canceled")
        seen, cursor = 0, None
        while True:
            page = h.get(
                "/v1/tasks", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200
            for t in page.json()["tasks"]:
                full = h.get(f"/v1/tasks/{t['id']}")
                assert full.status_code == 200, full.text
                assert full.json()["state"] in VALID_STATES
                seen += 1
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert seen >= 1
        counts = status.json()["tasks"]
        assert set(counts) <= VALID_STATES
    log = (d.logs / "daemon.err").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


def submit_one(d: DaemonProcess) -> dict[str, Any]:
    goal = "Keep this task intact through the fuzzing \u00e9\u4e2d\U0001f600"
    reply = d.rpc("task/submit", {"goal": goal})
    with d.http() as h:
        return h.get(f"/v1/tasks/{reply['result']['task_id']}").json()


# --- JSON-RPC corpus ---------------------------------------------------------------------------


def req(method: str = "daemon/status", params: Any = None, id_: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return body


def enc(doc: Any) -> bytes:
    return json.dumps(doc).encode()


DEEP = 100_000
#: (name, body, expected code of the single reply; None = a result).
SINGLE: list[tuple[str, bytes, int | None]] = [
    ("truncated", b'{"jsonrpc": "2.0", "method": ', -32700),
    ("garbage", b"\x00\x01 not json", -32700),
    ("empty body", b"", -32700),
    ("trailing comma", b'{"jsonrpc": "2.0", "method": "daemon/status", "id": 1,}', -32700),
    ("single quotes", b"{'jsonrpc': '2.0'}", -32700),
    ("NaN literal", b'{"jsonrpc": "2.0", "method": "daemon/status", "id": NaN}', -32700),
    (
        "Infinity param",
        b'{"jsonrpc": "2.0", "method": "task/list", "id": 1, "params": {"limit": -Infinity}}',
        -32700,
    ),
    ("1e400 id", b'{"jsonrpc": "2.0", "method": "daemon/status", "id": 1e400}', -32700),
    (
        "1e400 param",
        b'{"jsonrpc": "2.0", "method": "task/list", "id": 1, "params": {"limit": 1e400}}',
        -32700,
    ),
    (
        "5000-digit integer",
        b'{"jsonrpc": "2.0", "method": "daemon/status", "id": ' + b"9" * 5000 + b"}",
        -32700,
    ),
    (
        "10**400 limit",
        b'{"jsonrpc": "2.0", "method": "task/list", "id": 1, "params": {"limit": '
        + b"1"
        + b"0" * 400
        + b"}}",
        -32602,
    ),
    ("deep arrays", b"[" * DEEP, -32700),
    ("deep objects", b'{"a":' * DEEP, -32700),
    (
        "deep balanced params",
        b'{"jsonrpc": "2.0", "method": "task/get", "id": 1, "params": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        -32700,
    ),
    (
        "invalid UTF-8",
        b'{"jsonrpc": "2.0", "method": "task/submit", "id": 1, "params": {"goal": "\xff\xfe"}}',
        -32700,
    ),
    ("overlong UTF-8", b'{"jsonrpc": "2.0", "method": "daemon/status", "id": "\xc0\xaf"}', -32700),
    ("UTF-16 body", json.dumps(req()).encode("utf-16"), -32700),
    (
        "lone surrogate goal",
        b'{"jsonrpc": "2.0", "method": "task/submit", "id": 1, "params": {"goal": "\\ud800 x"}}',
        -32700,
    ),
    (
        "lone surrogate id",
        b'{"jsonrpc": "2.0", "method": "daemon/status", "id": "\\udfff"}',
        -32700,
    ),
    ("lone surrogate method", b'{"jsonrpc": "2.0", "method": "\\udfff", "id": 1}', -32700),
    ("not an object", b"42", -32600),
    ("string document", b'"daemon/status"', -32600),
    ("null document", b"null", -32600),
    ("empty batch", b"[]", -32600),
    ("over-long batch", enc([req(id_=i) for i in range(MAX_BATCH + 1)]), -32600),
    ("no jsonrpc", enc({"method": "daemon/status", "id": 1}), -32600),
    ("jsonrpc 1.0", enc({**req(), "jsonrpc": "1.0"}), -32600),
    ("jsonrpc as number", enc({**req(), "jsonrpc": 2.0}), -32600),
    ("method number", enc(req(method=7)), -32600),  # type: ignore[arg-type]
    ("method null", enc(req(method=None)), -32600),  # type: ignore[arg-type]
    ("params string", enc({**req(), "params": "x"}), -32600),
    ("params number", enc({**req(), "params": 3}), -32600),
    ("id true", enc(req(id_=True)), -32600),
    ("id object", enc(req(id_={"a": 1})), -32600),
    ("id array", enc(req(id_=[1])), -32600),
    ("unknown method", enc(req("task/explode")), -32601),
    ("rpc. reserved", enc(req("rpc.discover")), -32601),
    ("empty method", enc(req("")), -32601),
    ("huge method name", enc(req("m" * 100_000)), -32601),
    ("positional params", enc(req("task/get", ["t1"])), -32602),
    ("positional empty", enc(req("task/list", [])), -32602),
    ("goal number", enc(req("task/submit", {"goal": 42})), -32602),
    ("goal null", enc(req("task/submit", {"goal": None})), -32602),
    ("goal empty", enc(req("task/submit", {"goal": ""})), -32602),
    ("goal object", enc(req("task/submit", {"goal": {"x": 1}})), -32602),
    ("options not object", enc(req("task/submit", {"goal": "g", "options": []})), -32602),
    (
        "max_streams huge",
        enc(req("task/submit", {"goal": "g", "options": {"max_streams": 10**30}})),
        -32602,
    ),
    (
        "max_streams float",
        enc(req("task/submit", {"goal": "g", "options": {"max_streams": 2.5}})),
        -32602,
    ),
    ("unknown param", enc(req("task/list", {"bogus": 1})), -32602),
    ("limit negative", enc(req("task/list", {"limit": -1})), -32602),
    ("limit bool", enc(req("task/list", {"limit": True})), -32602),
    ("limit string", enc(req("task/list", {"limit": "5"})), -32602),
    (
        "max_streams bool",
        enc(req("task/submit", {"goal": "g", "options": {"max_streams": True}})),
        -32602,
    ),
    ("state unknown", enc(req("task/list", {"state": "exploded"})), -32602),
    ("task_id overlong", enc(req("task/get", {"task_id": "t" * 65})), -32602),
    ("task_id missing", enc(req("task/get", {})), -32602),
    ("task unknown", enc(req("task/get", {"task_id": "t-nope"})), -32001),
    ("task_id sql-ish", enc(req("task/get", {"task_id": "' OR 1=1 --"})), -32001),
    ("cancel unknown", enc(req("task/cancel", {"task_id": "t-nope"})), -32001),
    ("answers empty", enc(req("task/answer", {"task_id": "t", "answers": {}})), -32602),
    ("answers not str", enc(req("task/answer", {"task_id": "t", "answers": {"q": 1}})), -32602),
    ("decision unknown", enc(req("task/approve", {"task_id": "t", "decision": "maybe"})), -32602),
    ("config unknown key", enc(req("config/set", {"key": "no.such", "value": 1})), -32602),
    (
        "config wrong type",
        enc(req("config/set", {"key": "concurrency.ceiling", "value": "many"})),
        -32602,
    ),
    (
        "config deep value",
        b'{"jsonrpc": "2.0", "method": "config/set", "id": 1, "params": '
        b'{"key": "rules.instructions", "value": ' + b"[" * 500 + b"]" * 500 + b"}}",
        -32602,
    ),
    ("status with params", enc(req("daemon/status", {"x": 1})), -32602),
    ("id string", enc(req(id_="abc")), None),
    ("id zero", enc(req(id_=0)), None),
    ("id negative", enc(req(id_=-5)), None),
    ("id float", enc(req(id_=1.5)), None),
    (
        "id 400 digits",
        b'{"jsonrpc": "2.0", "method": "daemon/status", "id": ' + b"9" * 400 + b"}",
        None,
    ),
    ("id null", enc(req(id_=None)), None),
    ("id unicode", enc(req(id_="\u00e9\U0001f600")), None),
    (
        "surrogate pair is fine",
        b'{"jsonrpc": "2.0", "method": "daemon/status", "id": "\\ud83d\\ude00"}',
        None,
    ),
    ("params omitted", enc(req("task/list")), None),
    ("discover", enc(req("rpc/discover")), None),
    (
        "duplicate keys",
        b'{"jsonrpc": "2.0", "method": "no/such", "method": "daemon/status", "id": 1}',
        None,
    ),
]


def test_jsonrpc_corpus(daemon: DaemonProcess) -> None:
    before = submit_one(daemon)
    with daemon.http() as h:
        for name, body, code in SINGLE:
            r = post_rpc(h, body)
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            doc = r.json()
            assert isinstance(doc, dict) and doc["jsonrpc"] == "2.0", (name, doc)
            if code is None:
                assert "result" in doc and "error" not in doc, (name, doc)
                continue
            assert doc.get("error", {}).get("code") == code, (name, doc)
            assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
            if code == -32700 or (
                code == -32600 and (b'"id": 1' not in body or body.startswith(b"["))
            ):
                # No id could be read (an invalid one, or none at all): null, as the spec says.
                assert doc["id"] is None, (name, doc)
            else:
                assert doc["id"] == 1, (name, doc)
            if code == -32602:  # names the field at fault
                data = doc["error"]["data"]
                fields = [d["field"] for d in data] if isinstance(data, list) else [data["field"]]
                assert all(fields), (name, doc)

        # The id comes back exactly as sent, whatever its JSON type.
        for id_ in ("abc", 0, -5, 1.5, None, "\u00e9"):
            assert post_rpc(h, enc(req(id_=id_))).json()["id"] == id_
        big = post_rpc(
            h, b'{"jsonrpc": "2.0", "method": "daemon/status", "id": ' + b"9" * 400 + b"}"
        )
        assert big.json()["id"] == int("9" * 400)

        # Positional params: by-name only, said so in the error and in rpc/discover.
        pos = post_rpc(h, enc(req("task/get", ["t1"]))).json()["error"]
        assert pos["data"][0]["field"] == "params" and "by-position" in pos["data"][0]["message"]
        discover = post_rpc(h, enc(req("rpc/discover"))).json()["result"]
        assert {m["paramStructure"] for m in discover["methods"] if m["params"]} == {"by-name"}

        # Notifications: nothing back, even when they are invalid calls.
        for body in (
            enc({"jsonrpc": "2.0", "method": "daemon/status"}),
            enc({"jsonrpc": "2.0", "method": "no/such"}),
            enc({"jsonrpc": "2.0", "method": "task/get", "params": {"task_id": 5}}),
            enc([{"jsonrpc": "2.0", "method": "daemon/status"}] * 3),
        ):
            r = post_rpc(h, body)
            assert r.status_code == 204 and r.content == b""

        # A mixed batch: one reply per call with an id, in any order, each with its own id.
        batch = [
            req(id_="a"),
            {"jsonrpc": "2.0", "method": "daemon/status"},
            req("no/such", id_=2),
            req("task/get", {"task_id": 5}, id_=3.5),
            {"foo": "bar"},
            1,
            [],
            None,
            req(id_=True),
            req("task/list", ["x"], id_=4),
            req("task/get", {"task_id": before["id"]}, id_=5),
        ]
        replies = post_rpc(h, enc(batch)).json()
        assert isinstance(replies, list) and len(replies) == len(batch) - 1
        by_id: dict[Any, list[dict[str, Any]]] = {}
        for reply in replies:
            by_id.setdefault(json.dumps(reply["id"]), []).append(reply)
        assert "result" in by_id['"a"'][0]
        assert by_id["2"][0]["error"]["code"] == -32601
        assert by_id["3.5"][0]["error"]["code"] == -32602
        assert by_id["4"][0]["error"]["code"] == -32602
        assert by_id["5"][0]["result"]["id"] == before["id"]
        assert [r["error"]["code"] for r in by_id["null"]] == [-32600] * 5
        full = post_rpc(h, enc([req(id_=i) for i in range(MAX_BATCH)])).json()
        assert sorted(r["id"] for r in full) == list(range(MAX_BATCH))

        # Over server.max_body_bytes: 413 from the guard, before any parsing.
        huge = (
            b'{"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": {"goal": "'
            + b"x" * (1024 * 1024)
            + b'"}}'
        )
        assert h.post("/rpc", content=huge, headers=JSON).status_code == 413
        # Wrong content type or method on /rpc is still not a 5xx.
        r = h.post("/rpc", content=enc(req()), headers={"content-type": "text/plain"})
        assert r.status_code == 200 and "result" in r.json()
        r = h.get("/rpc")
        assert r.status_code == 405 and r.json()["error"]["message"]
    assert_healthy(daemon, before)


# --- REST corpus -------------------------------------------------------------------------------

REST_BAD: list[tuple[str, str, bytes, int]] = [
    ("POST", "/v1/tasks", b'{"goal": ', 400),
    ("POST", "/v1/tasks", b"goal=x", 400),
    ("POST", "/v1/tasks", b"[" * DEEP, 400),
    ("POST", "/v1/tasks", b'{"goal": "\xff"}', 400),
    ("POST", "/v1/tasks", b'{"goal": "\\ud800"}', 400),
    ("POST", "/v1/tasks", b'{"goal": "g", "context": "\\udc00"}', 400),
    ("POST", "/v1/tasks", b'{"goal": "g", "options": {"max_streams": NaN}}', 400),
    ("POST", "/v1/tasks", b'{"goal": "g", "options": {"max_streams": 1e400}}', 400),
    ("POST", "/v1/tasks", b'["goal"]', 422),
    ("POST", "/v1/tasks", b"null", 422),
    ("POST", "/v1/tasks", b'{"goal": "g", "extra": 1}', 422),
    ("PUT", "/v1/config", b'{"key": "rules.instructions", "value": ["\\ud800"]}', 400),
    ("PUT", "/v1/config", b'{"key": "models.executor.timeout_s", "value": Infinity}', 400),
    ("PUT", "/v1/config", b'{"key": "concurrency.ceiling", "value": 1' + b"0" * 400 + b"}", 422),
    ("POST", "/v1/tasks/t-nope/answer", b'{"answers": {"\\udc00": "x"}}', 400),
    ("POST", "/v1/tasks/t-nope/approve", b'{"decision": "approve", "comment": 5}', 422),
    ("POST", "/v1/tasks/t-nope/cancel", b"", 404),
]


def test_rest_corpus(daemon: DaemonProcess) -> None:
    before = submit_one(daemon)
    with daemon.http() as h:
        for method, path, body, status in REST_BAD:
            r = h.request(method, path, content=body, headers=JSON)
            assert r.status_code == status, (method, path, body[:80], r.status_code, r.text)
            err = r.json()["error"]
            assert err["message"] and "Traceback" not in r.text
            if status in (400, 422):
                assert err["code"] in (-32700, -32602), err
        for path, params in [
            ("/v1/tasks", {"limit": "0"}),
            ("/v1/tasks", {"limit": "1e400"}),
            ("/v1/tasks", {"state": "nope"}),
            ("/v1/tasks", {"cursor": "x" * 65}),
            ("/v1/tasks", {"limit": "9" * 5000}),
            ("/v1/events", {"after": "-1"}),
        ]:
            r = h.get(path, params=params)
            assert r.status_code == 422 and r.json()["error"]["data"][0]["field"], (params, r.text)
        for path, status in [
            ("/v1/tasks/%ED%A0%80", 404),
            ("/v1/tasks/" + "x" * 5000, 422),
            ("/v1/nope", 404),
            ("/v1/tasks/t-nope/events", 404),
        ]:
            r = h.get(path)
            assert r.status_code == status and r.json()["error"]["message"], (path, r.text)
        r = h.post("/v1/tasks/" + "x" * 65 + "/cancel")
        assert r.status_code == 422 and r.json()["error"]["data"][0]["field"] == "task_id"
        r = h.delete("/v1/tasks")
        assert r.status_code == 405 and r.json()["error"]["message"]
        r = h.get("/v1/events", headers={"Last-Event-ID": "not-a-number"})
        assert r.status_code == 422 and "Last-Event-ID" in r.json()["error"]["message"]
    assert_healthy(daemon, before)


# --- schemathesis ------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def _checks(path: str, mode: GenerationMode) -> list[Any]:
    found = [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
        st_checks.response_schema_conformance,
    ]
    if mode == GenerationMode.NEGATIVE and path != "/rpc":
        # /rpc answers bad JSON-RPC with a 200 and an error in the body, as the spec says.
        found.append(st_checks.negative_data_rejection)
    return found


def load_schema(d: DaemonProcess) -> Any:
    auth = {"Authorization": f"Bearer {d.token}"}
    # Unknown query parameters are ignored, as HTTP APIs commonly do (a newer client talking
    # to an older daemon); unknown body fields are refused (extra="forbid").
    config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
    schema = schemathesis.openapi.from_url(
        f"{d.url}/openapi.json", config=config, headers=auth, timeout=30
    )
    # The event streams never end; their bad input is in test_rest_corpus.
    return schema.exclude(path_regex=r"/events$")


def fuzz_operation(d: DaemonProcess, op: Any, mode: GenerationMode) -> int:
    """Hypothesis over one operation in one mode; returns the number of calls made."""
    auth = {"Authorization": f"Bearer {d.token}"}
    checks = _checks(op.path, mode)
    calls = 0

    @FUZZ_SETTINGS
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        response = case.call(base_url=d.url, headers=auth, timeout=30)
        calls += 1
        case.validate_response(response, checks=checks, headers=auth)

    run()
    return calls


@pytest.mark.slow
def test_schemathesis_each_operation(daemon: DaemonProcess) -> None:
    before = submit_one(daemon)
    schema = load_schema(daemon)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/rpc",
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/config",
        "/v1/tasks/{task_id}/answer",
    }
    calls = 0
    for op in operations:
        calls += fuzz_operation(daemon, op, GenerationMode.POSITIVE)
        if op.path_parameters or op.query or op.body:  # else there is nothing to break
            calls += fuzz_operation(daemon, op, GenerationMode.NEGATIVE)
    assert calls >= len(operations) * 2
    assert_healthy(daemon, before)


@pytest.mark.slow
def test_schemathesis_stateful(daemon: DaemonProcess) -> None:
    """Submit, then get/cancel/answer/approve the returned task id, following the links."""
    before = submit_one(daemon)
    schema = load_schema(daemon)
    auth = {"Authorization": f"Bearer {daemon.token}"}
    followed: list[str] = []
    checks = _checks("/v1", GenerationMode.POSITIVE)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": daemon.url, "headers": auth, "timeout": 30}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if "{task_id}" in case.operation.path and response.status_code != 404:
                followed.append(case.operation.path)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=checks, headers=auth)

    Machine.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: some call reached a task the machine had submitted.
    assert followed
    assert_healthy(daemon, before)
