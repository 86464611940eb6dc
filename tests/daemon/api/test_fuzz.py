"""Bad input against a real daemon: a JSON-RPC corpus, a REST corpus and schemathesis.

The tests share one daemon on a simulator whose models take a minute, so submitted tasks
stay live while the tests run. Whatever is sent, the answer must be a 4xx or a JSON-RPC
error that says what is wrong, never a 5xx, an internal error (-32603: /rpc answers a bug of
the daemon's with HTTP 200) or a traceback; afterwards the daemon still serves and every task
in the store is readable and in a valid state. The daemon logs every internal error with its
traceback; its stderr goes to a file, read at the end, and any traceback fails the test.

Beyond malformed JSON and JSON-RPC, the corpora carry the classes of input an attacker used:
digits that are not ASCII (`str.isdigit` takes "²"), integers past SQLite's 64-bit INTEGER
in every numeric field (params, config values, event ids, query strings), and control
characters (C0, C1, NUL, escape sequences) in every text field.

`TIERD_FUZZ_EXAMPLES` sets hypothesis' examples per operation and mode and the stateful
runs (default 8: about two hundred requests in CI); the long run is
`TIERD_FUZZ_EXAMPLES=300 .venv/bin/python -m pytest tests/daemon/test_fuzz.py`.
"""

from __future__ import annotations

import json
import os
import socket
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
from daemon.config.schema import load_defaults
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


def internal_errors(doc: Any) -> list[Any]:
    """The replies of a JSON-RPC answer (one or a batch) that are internal errors (-32603):
    a bug of the daemon's, whatever the input, so a test fails on any of them."""
    replies = doc if isinstance(doc, list) else [doc]
    return [
        r
        for r in replies
        if isinstance(r, dict)
        and isinstance(r.get("error"), dict)
        and r["error"].get("code") == -32603
    ]


def post_rpc(h: httpx.Client, body: bytes) -> httpx.Response:
    r = h.post("/rpc", content=body, headers=JSON)
    assert r.status_code < 500, (body[:200], r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    if r.content:
        assert not internal_errors(r.json()), (body[:200], r.text[:500])
    return r


def _log_lines(d: DaemonProcess, task_id: str) -> list[str]:
    """The daemon's log lines about `task_id` or a cancel: why a task ended, when it should not
    have (a failure to explain, not to hide)."""
    if d.logs is None:
        return []
    text = (d.logs / "daemon.err").read_text(encoding="utf-8", errors="replace")
    return [ln for ln in text.splitlines() if task_id in ln or "cancel" in ln.lower()][-20:]


def assert_healthy(d: DaemonProcess, before: dict[str, Any], *, canceled: bool = False) -> None:
    """The daemon serves, the task from before is intact, every task is readable and valid
    (`canceled`: the fuzzer itself canceled the task from before, and was answered so)."""
    with d.http() as h:
        status = h.get("/v1/status")
        assert status.status_code == 200 and status.json()["pid"] == d.proc.pid  # type: ignore[union-attr]
        got = h.get(f"/v1/tasks/{before['id']}").json()
        # Its planner is still waiting on the slow simulator: live, same goal, never failed.
        ended = ("failed",) if canceled else ("failed", "canceled")
        assert got["goal"] == before["goal"] and got["state"] not in ended, (
            got["state"],
            got.get("error"),
            _log_lines(d, before["id"]),
        )
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
    assert_clean_log(d)


def assert_clean_log(d: DaemonProcess) -> None:
    """No traceback in the daemon's log: an internal error is logged with one (JSON-RPC
    -32603 and REST 500 alike), so this finds every bug the answers hid."""
    assert d.logs is not None
    log = (d.logs / "daemon.err").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "internal error" not in log.lower(), log[-3000:]


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
#: Numbers an attacker sends: past SQLite's 64-bit INTEGER, far past it, and past a float.
HUGE_INTS = (2**63, -(2**63) - 1, 10**30, -(10**30), 10**400)
#: Digits that are not ASCII: `str.isdigit` takes them, `int` reads some of them.
UNICODE_DIGITS = ("\u00b2", "\u0661\u0662", "\uff11\uff12", "\u0967")
NUMERIC_KEYS = [
    k for k, v in load_defaults().items() if isinstance(v, int | float) and not isinstance(v, bool)
]
#: Huge integers and Unicode digits in every numeric field of every method.
NUMBERS: list[tuple[str, bytes, int | None]] = [
    *(
        (f"{field} {n}", enc(req(method, wrap(n))), -32602)
        for n in HUGE_INTS
        for field, method, wrap in (
            ("limit", "task/list", lambda n: {"limit": n}),
            ("max_streams", "task/submit", lambda n: {"goal": "g", "options": {"max_streams": n}}),
        )
    ),
    *(
        (f"{field} {d!r}", enc(req(method, wrap(d))), -32602)
        for d in UNICODE_DIGITS
        for field, method, wrap in (
            ("limit", "task/list", lambda d: {"limit": d}),
            ("max_streams", "task/submit", lambda d: {"goal": "g", "options": {"max_streams": d}}),
            ("config value", "config/set", lambda d: {"key": "concurrency.ceiling", "value": d}),
        )
    ),
    *(
        (f"config {key} = {n}", enc(req("config/set", {"key": key, "value": n})), -32602)
        for key in NUMERIC_KEYS
        for n in (HUGE_INTS[0], HUGE_INTS[1], HUGE_INTS[-1])
    ),
    (
        "Unicode digits as a JSON number",
        '{"jsonrpc": "2.0", "method": "task/list", "id": 1, "params": {"limit": \u0661}}'.encode(),
        -32700,
    ),
]
#: (name, body, expected code of the single reply; None = a result).
SINGLE: list[tuple[str, bytes, int | None]] = [
    *NUMBERS,
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


# --- control characters in every text field ---------------------------------------------------

#: C0 (NUL, BEL, ESC sequences that retitle or clear a terminal), DEL, C1 (NEL, CSI) and a
#: line separator: text that must be stored and read back as sent, or refused, never a crash.
CONTROL = "a\x00b\x01\x07\x1b]0;TITLE\x07\x1b[2J\x1b[31m\x7f\u0085\u009b\u2028\ttab\nline"
TEXT_KEYS = [k for k, v in load_defaults().items() if isinstance(v, str | list)]


#: A result or a refusal that names the field: anything but an internal error.
ANY_4XX = {None, -32602}


def rpc_doc(h: httpx.Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    doc = post_rpc(h, enc(req(method, params))).json()
    assert isinstance(doc, dict)
    return doc


def code_of(doc: dict[str, Any]) -> int | None:
    return None if "result" in doc else int(doc["error"]["code"])


def test_control_characters_in_every_text_field(daemon: DaemonProcess) -> None:
    before = submit_one(daemon)
    live = before["id"]
    with daemon.http() as h:
        # Stored as sent and read back as sent (JSON escapes them), through both adapters.
        doc = rpc_doc(h, "task/submit", {"goal": CONTROL, "context": CONTROL})
        task_id = doc["result"]["task_id"]
        got = rpc_doc(h, "task/get", {"task_id": task_id})["result"]
        assert (got["goal"], got["context"]) == (CONTROL, CONTROL)
        r = h.post("/v1/tasks", json={"goal": CONTROL, "options": {"instructions": [CONTROL]}})
        assert r.status_code == 202, r.text
        assert h.get(f"/v1/tasks/{r.json()['task_id']}").json()["goal"] == CONTROL
        # Refused or not found, naming what is wrong; never an internal error.
        for method, params, codes in [
            ("task/submit", {"goal": "g", "idempotency_key": CONTROL}, {-32602}),
            ("task/submit", {"goal": "g", "options": {"project_dir": CONTROL}}, {-32602}),
            ("task/submit", {"goal": "g", "options": {"coupled": [[CONTROL, "x"]]}}, ANY_4XX),
            ("task/submit", {"goal": "g", "options": {"approval": CONTROL}}, {-32602}),
            ("task/get", {"task_id": CONTROL}, {-32001}),
            ("task/cancel", {"task_id": CONTROL}, {-32001}),
            ("task/list", {"cursor": CONTROL}, {None}),
            ("task/list", {"state": CONTROL}, {-32602}),
            ("task/answer", {"task_id": CONTROL, "answers": {CONTROL: CONTROL}}, {-32001}),
            ("task/answer", {"task_id": live, "answers": {CONTROL: CONTROL}}, {-32002}),
            ("task/approve", {"task_id": live, "decision": "reject", "comment": CONTROL}, {-32002}),
            ("task/approve", {"task_id": live, "decision": CONTROL}, {-32602}),
            ("config/get", {"key": CONTROL}, {-32602}),
            ("config/set", {"key": CONTROL, "value": CONTROL}, {-32602}),
            (CONTROL, {}, {-32601}),
        ]:
            doc = rpc_doc(h, method, params)
            assert code_of(doc) in codes, (method, params, doc)
        # Every text setting: taken (and read back as sent) or refused, then put back.
        for key in TEXT_KEYS:
            kept = rpc_doc(h, "config/get", {"key": key})["result"]["value"]
            value = [CONTROL] if isinstance(kept, list) else CONTROL
            if key == "rules.coupled":
                value = [[CONTROL, "other"]]
            doc = rpc_doc(h, "config/set", {"key": key, "value": value})
            assert code_of(doc) in (None, -32602), (key, doc)
            if code_of(doc) is None:
                assert rpc_doc(h, "config/get", {"key": key})["result"]["value"] == value
                assert code_of(rpc_doc(h, "config/set", {"key": key, "value": kept})) is None
        # In headers and paths: refused by the HTTP parser or not found, never a 5xx.
        for path in ("/v1/tasks/%00%1B%5B2J", "/v1/tasks/%C2%85%C2%9B/events"):
            assert h.get(path).status_code == 404
        r = h.get("/v1/tasks", params={"cursor": CONTROL, "limit": 5})
        assert r.status_code == 200
        assert h.get("/v1/tasks", params={"state": CONTROL}).status_code == 422
        r = h.put("/v1/config", json={"key": "rules.instructions", "value": [CONTROL]})
        assert r.status_code == 200 and r.json()["value"] == [CONTROL]
        assert h.put("/v1/config", json={"key": "rules.instructions", "value": []}).is_success
    for header in (b"\x1b[2J", b"a\x00b", b"\x85\x9b"):
        assert raw_status(daemon, b"Idempotency-Key: " + header) in (400, 422)
    assert_healthy(daemon, before)


def raw_status(d: DaemonProcess, header: bytes) -> int:
    """The status of a submit carrying `header` as sent, byte for byte (httpx would refuse)."""
    host, port = d.url.removeprefix("http://").rsplit(":", 1)
    body = b'{"goal": "raw"}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Authorization: Bearer " + d.token.encode() + b"\r\n" + header + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    return int(head.split()[1])


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
        for query in [*UNICODE_DIGITS, *map(str, HUGE_INTS), "1e3", "0x10", "", "1 2"]:
            r = h.get("/v1/tasks", params={"limit": query})
            assert r.status_code == 422 and r.json()["error"]["data"][0]["field"] == "limit"
    assert_event_ids_bounded(daemon, before["id"])
    assert_healthy(daemon, before)


#: Resume ids a client may send: every one is refused (422 naming the field) but the last.
BAD_EVENT_IDS = [
    *(d.encode() for d in UNICODE_DIGITS),
    b"\xb2",  # "²" as one latin-1 byte, which is how a server reads a header
    b"9" * 5000,
    b"9" * 30,
    str(2**63).encode(),
    b"-1",
    b"+5",
    b"1e3",
    b"0x10",
]


def assert_event_ids_bounded(d: DaemonProcess, task_id: str) -> None:
    """Resume ids past SQLite's INTEGER, or not ASCII digits, are refused naming the field;
    the largest one it holds opens a stream that stays open (the read is not cut)."""
    with d.http() as h:
        for path in ("/v1/events", f"/v1/tasks/{task_id}/events"):
            for raw in BAD_EVENT_IDS:
                r = h.get(path, headers=[("Last-Event-ID", raw)])
                assert r.status_code == 422, (path, raw[:40], r.status_code, r.text[:300])
                assert r.json()["error"]["data"]["field"] == "Last-Event-ID"
            for after in [*UNICODE_DIGITS, *map(str, HUGE_INTS), "-1", "1.5"]:
                r = h.get(path, params={"after": after})
                assert r.status_code == 422, (path, after[:40], r.status_code, r.text[:300])
                assert r.json()["error"]["data"][0]["field"] == "after"
            largest = str(2**63 - 1)
            for target, header in (
                (path, f"Last-Event-ID: {largest}"),
                (f"{path}?after={largest}", ""),
            ):
                assert stream_stays_open(d, target, header)


def stream_stays_open(d: DaemonProcess, target: str, header: str) -> bool:
    """Whether an event stream opens (200) and stays open and quiet for a moment: it is not
    cut by an error reading from the store (the failure of a resume id past SQLite's INTEGER)."""
    host, port = d.url.removeprefix("http://").rsplit(":", 1)
    extra = f"{header}\r\n" if header else ""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {d.token}\r\n"
            f"{extra}\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                return False
            head += chunk
        if head.split()[1] != b"200":
            return False
        sock.settimeout(0.5)
        try:
            got = sock.recv(65536)
        except TimeoutError:
            return True  # open and quiet: the keep-alive ping comes every ten seconds
        return bool(got) and b"event: error" not in got


# --- schemathesis ------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """A JSON-RPC answer is never -32603: /rpc answers 200 even for a bug of the daemon's,
    so `not_a_server_error` cannot see one."""
    if response.status_code == 200 and response.content:
        found = internal_errors(response.json())
        if found:
            raise AssertionError(f"internal error answered: {found}")
    return None


def _checks(path: str, mode: GenerationMode) -> list[Any]:
    found = [
        st_checks.not_a_server_error,
        no_internal_error,
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
    canceled: set[str | None] = set()
    checks = _checks("/v1", GenerationMode.POSITIVE)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": daemon.url, "headers": auth, "timeout": 30}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if "{task_id}" in case.operation.path and response.status_code != 404:
                followed.append(case.operation.path)
            # Schemathesis also links the tasks a list returns to the calls that take a task
            # id, so it may cancel the task from before itself, as any client may.
            if case.operation.path.endswith("/cancel") and response.status_code == 200:
                canceled.add(case.path_parameters.get("task_id"))

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
    assert_healthy(daemon, before, canceled=before["id"] in canceled)
