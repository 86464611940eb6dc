"""Hostile clients and secrets, against a real daemon that has done real work.

The threat model is the README's: anything on the same machine can open a TCP connection to
the daemon's loopback port, and any web page the user opens can make the browser send
requests there (a plain cross-origin fetch, or DNS rebinding that makes evil.example resolve
to 127.0.0.1). Only the holder of the token in the private daemon.json may drive the daemon.

And the provider key: it is planted in the daemon's environment (the models' `api_key_env`
names it), tasks run to completion, fall back and fail, and then the key is searched for
everywhere the daemon writes or answers: every file in its home, every API output, every
event, its logs and the notification hook's environment. The simulator records the
Authorization header it received, so the search is not vacuous: the key did travel, to the
provider and nowhere else.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support import CHEAP, PREMIUM
from support.daemon import DaemonProcess, wait_for
from support.simulator import use_scenario

from daemon.tools.simulator.server import SimulatorThread

#: A fake provider key; random so that no fixture text can contain it by chance.
KEY = f"sk-tierdplanted-{secrets.token_hex(20)}"
#: Its variable's name says nothing about keys: the notify hook must drop it because a
#: model's api_key_env names it, not because of its name.
KEY_ENV = "TIERD_PLANTED_PROVIDER"
FALLBACK = "openai/gpt-5-nano"
ALLOWED_ORIGIN = "http://allowed.example:3000"
FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
STREAMS = [
    {
        "id": s,
        "title": f"Part {s}",
        "job": f"Write part {s}.",
        "outputs": [f"{s}.md"],
        "output_definition": f"Part {s} in markdown",
        "deps": [],
    }
    for s in ("a", "b")
]
#: The executor's own model always fails: every stream is done by its fallback.
FALLING_BACK = {"latency": FAST, "plan": {"streams": STREAMS}, "fail_models": [CHEAP]}
#: Every model fails: the task fails, with the provider's error in its report.
ALL_FAIL = {
    "latency": FAST,
    "plan": {"streams": STREAMS},
    "fail_models": [PREMIUM, CHEAP, FALLBACK],
}
TERMINAL = {"completed", "failed", "canceled"}

# One daemon does real work once (its first task pays for importing litellm), then every
# test probes it: well over 10 s in all on a busy machine.
pytestmark = pytest.mark.slow


# --- the simulator, recording what it was sent -----------------------------------------------


class Recorded:
    """What the simulator's front door saw, and whether it should echo the key back."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.echo = False


class AuthRecorder:
    """ASGI middleware in front of the simulator: records every Authorization header, and
    when `echo` is on answers 401 with the full key in the message, as a careless provider
    might (the daemon must scrub it from what it stores)."""

    def __init__(self, app: Any, box: Recorded) -> None:
        self.app = app
        self.box = box

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            self.box.seen.append(auth)
            if self.box.echo:
                body = json.dumps(
                    {
                        "error": {
                            "message": "Incorrect API key provided: "
                            + auth.removeprefix("Bearer "),
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def write_config(home: Path, sim_url: str, hook: Path) -> None:
    lines = []
    for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
        lines += [
            f"[models.{role}]",
            f'model = "{model}"',
            f'api_base = "{sim_url}/v1"',
            f'api_key_env = "{KEY_ENV}"',
            "timeout_s = 20.0",
            "max_retries = 1",
        ]
        if role == "executor":
            lines.append(f'fallbacks = ["{FALLBACK}"]')
        lines.append("")
    lines += [
        "[concurrency]",
        "interval_ms = 100",
        "",
        "[server]",
        f'allowed_origins = ["{ALLOWED_ORIGIN}"]',
        "",
        "[notify]",
        f"command = {json.dumps(str(hook))}",
        "",
    ]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")
    # Written as a careless user would: world-readable. The daemon makes it private.
    (home / "config.toml").chmod(0o644)


def write_hook(path: Path, log: Path) -> None:
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}) + '\\n')\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


class Worked:
    """A daemon that has run tasks with the planted key: one completed through the
    executor's fallback, one failed because every model fails, one failed because the
    provider echoed the key in its error."""

    def __init__(
        self,
        d: DaemonProcess,
        sim: SimulatorThread,
        recorder: Recorded,
        hook_log: Path,
        tasks: dict[str, str],
        executed_by: set[str],
    ) -> None:
        self.d, self.sim, self.recorder, self.hook_log = d, sim, recorder, hook_log
        self.tasks = tasks
        #: The models that answered the completed task's execute calls.
        self.executed_by = executed_by


def run_task(d: DaemonProcess, goal: str) -> dict[str, Any]:
    client = d.client()
    try:
        task_id = client.submit(goal)["task_id"]
        return wait_for(lambda: (t := client.get(task_id))["state"] in TERMINAL and t, 90)
    finally:
        client.close()


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worked]:
    home = tmp_path_factory.mktemp("home")
    # Left by a careless earlier life: a readable home, token and database. The daemon
    # makes them private when it starts.
    home.chmod(0o755)
    (home / "token").write_text(secrets.token_urlsafe(32) + "\n")
    (home / "token").chmod(0o644)
    (home / "tierd.db").touch(mode=0o666)
    (home / "tierd.db").chmod(0o666)
    outside = tmp_path_factory.mktemp("outside")
    hook, hook_log = outside / "hook", outside / "hook.jsonl"
    write_hook(hook, hook_log)
    sim = SimulatorThread(FALLING_BACK)
    recorder = Recorded()
    sim.app.add_middleware(AuthRecorder, box=recorder)
    with sim:
        write_config(home, sim.url, hook)
        d = DaemonProcess(home, {KEY_ENV: KEY}, logs=outside, args=("--log-level", "debug")).start()
        try:
            tasks = {}
            done = run_task(d, "Write the two parts")
            assert done["state"] == "completed", done["error"]
            tasks["completed"] = done["id"]
            # Taken now: a new scenario clears the simulator's records.
            calls = httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()["calls"]
            answered_by = {
                c["model"] for c in calls if c["status"] == 200 and c["purpose"] == "execute"
            }
            use_scenario(sim, ALL_FAIL)
            failed = run_task(d, "Write the two parts, but every model is down")
            assert failed["state"] == "failed"
            tasks["all_fail"] = failed["id"]
            recorder.echo = True
            echoed = run_task(d, "Write the two parts, but the provider echoes the key")
            assert echoed["state"] == "failed"
            tasks["echoed"] = echoed["id"]
            recorder.echo = False
            yield Worked(d, sim, recorder, hook_log, tasks, answered_by)
        finally:
            d.stop()


# --- raw HTTP, for requests no well-behaved client would send ----------------------------------


def raw(d: DaemonProcess, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (request line and headers, CRLF added) over a socket; (status, reply)."""
    parts = urlsplit(d.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply


def get_with_host(d: DaemonProcess, host: str | None, path: str = "/v1/status") -> int:
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"Authorization: Bearer {d.token}", "Connection: close"]
    return raw(d, "\n".join(lines))[0]


# --- tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        "Bearer {token}x",
        "Bearer {short}",
        "Basic {basic}",
        "Token {token}",
        "{token}",
        "Bearer{token}",
        "Bearer {token} {token}",
    ],
)
def test_missing_wrong_or_misschemed_token_is_401(worked: Worked, auth: str | None) -> None:
    d = worked.d
    headers = {}
    if auth is not None:
        basic = base64.b64encode(f"tierd:{d.token}".encode()).decode()
        headers["Authorization"] = auth.format(token=d.token, short=d.token[:-1], basic=basic)
    with httpx.Client(base_url=d.url, timeout=30) as h:
        for method, path in (
            ("GET", "/v1/status"),
            ("GET", "/openapi.json"),
            ("GET", f"/v1/tasks/{worked.tasks['completed']}"),
            ("POST", "/rpc"),
            ("POST", "/v1/tasks"),
            ("GET", "/v1/events"),
        ):
            r = h.request(
                method,
                path,
                headers=headers,
                json={"jsonrpc": "2.0", "id": 1, "method": "daemon/status"}
                if method == "POST"
                else None,
            )
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert d.token not in r.text


def test_scheme_is_case_insensitive_and_right_token_works(worked: Worked) -> None:
    with httpx.Client(base_url=worked.d.url, timeout=30) as h:
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = h.get("/v1/status", headers={"Authorization": f"{scheme} {worked.d.token}"})
            assert r.status_code == 200


@pytest.mark.parametrize("param", ["token", "access_token"])
def test_token_in_query_string_is_refused_even_when_right(worked: Worked, param: str) -> None:
    d = worked.d
    with d.http() as h:  # the header is right too: the query string alone is the offence
        for path in ("/v1/status", "/v1/events", "/rpc"):
            r = h.request(
                "POST" if path == "/rpc" else "GET",
                path,
                params={param: d.token},
                json={"jsonrpc": "2.0", "id": 1, "method": "daemon/status"}
                if path == "/rpc"
                else None,
            )
            assert r.status_code == 401, path
            assert "query string" in r.json()["error"]["message"]
            assert d.token not in r.text


def test_healthz_is_open_but_says_nothing(worked: Worked) -> None:
    with httpx.Client(base_url=worked.d.url, timeout=30) as h:
        r = h.get("/healthz")
        # No secret, nothing about tasks: the instance id only lets a client check, before
        # it sends the token, that this is the daemon its daemon.json names.
        assert r.status_code == 200 and set(r.json()) == {"ok", "instance_id"}
        info = json.loads((worked.d.home / "daemon.json").read_text())
        assert r.json()["instance_id"] == info["instance_id"]
        # Only the exact path is open: look-alikes still want the token.
        for path in ("/healthz/", "/healthz/../v1/status", "/HEALTHZ"):
            assert h.get(path).status_code == 401, path
    # httpx would read "//healthz" as a host name: send that path as it is.
    url = httpx.URL(worked.d.url)
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        conn.request("GET", "//healthz")
        assert conn.getresponse().status == 401
    finally:
        conn.close()


# --- Origin ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example:8737",
        "http://allowed.example:3001",
        "https://allowed.example:3000",
        "file://",
    ],
)
def test_foreign_origin_is_403_everywhere(worked: Worked, origin: str) -> None:
    d = worked.d
    with d.http() as h:  # a right token does not help a foreign page
        rpc = h.post(
            "/rpc",
            headers={"Origin": origin},
            json={"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": {"goal": "sneaky"}},
        )
        assert rpc.status_code == 403 and "server.allowed_origins" in rpc.text
        assert h.get("/v1/status", headers={"Origin": origin}).status_code == 403
        sse = h.get(
            f"/v1/tasks/{worked.tasks['completed']}/events",
            headers={"Origin": origin, "Accept": "text/event-stream"},
        )
        assert sse.status_code == 403
        preflight = h.options(
            "/rpc",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
    with httpx.Client(base_url=d.url, timeout=30) as h:  # and without a token
        assert (
            h.options(
                "/rpc", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            ).status_code
            == 403
        )


def test_allowed_origin_gets_cors_but_still_needs_the_token(worked: Worked) -> None:
    with worked.d.http() as h:
        r = h.get("/v1/status", headers={"Origin": ALLOWED_ORIGIN})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    with httpx.Client(base_url=worked.d.url, timeout=30) as h:
        assert h.get("/v1/status", headers={"Origin": ALLOWED_ORIGIN}).status_code == 401
        # The browser's preflight carries no token: it is answered, and runs nothing.
        pre = h.options(
            "/rpc",
            headers={
                "Origin": ALLOWED_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        # A preflight-looking request from no page at all is just an unauthenticated request.
        assert (
            h.options("/rpc", headers={"Access-Control-Request-Method": "POST"}).status_code == 401
        )


def test_duplicate_security_headers_are_refused(worked: Worked) -> None:
    d = worked.d
    base = f"GET /v1/status HTTP/1.1\nAuthorization: Bearer {d.token}\nConnection: close"
    assert raw(d, f"{base}\nHost: localhost")[0] == 200
    # Two Hosts (one foreign) or two Origins: which one counts is parser-dependent, so neither.
    assert raw(d, f"{base}\nHost: localhost\nHost: evil.example")[0] in {400, 421}
    assert raw(d, f"{base}\nHost: evil.example\nHost: localhost")[0] in {400, 421}
    two_origins = f"{base}\nHost: localhost\nOrigin: http://evil.example\nOrigin: {ALLOWED_ORIGIN}"
    assert raw(d, two_origins)[0] in {400, 403}


def test_websocket_upgrade_is_guarded(worked: Worked) -> None:
    d = worked.d
    head = (
        "GET /v1/events HTTP/1.1\nHost: localhost\nUpgrade: websocket\n"
        "Connection: Upgrade\nSec-WebSocket-Version: 13\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nOrigin: http://evil.example"
    )
    status, _ = raw(d, head)
    assert status != 101 and 400 <= status < 500


# --- Host (DNS rebinding) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example",
        "127.0.0.1.evil.example:{port}",
        "localhost.evil.example",
        "localhost.evil.example:{port}",
        "evil.example:{port}@localhost",
        "localhost@evil.example",
        "",
        "0.0.0.0:{port}",
        "[::ffff:7f00:1]evil.example",
        "[::1",
        "evil.example:[::1]",
        "10.0.0.1:{port}",
        "[2001:db8::1]:{port}",
        "127.1",
        "2130706433",
    ],
)
def test_rebinding_host_is_rejected(worked: Worked, host: str) -> None:
    port = urlsplit(worked.d.url).port
    status = get_with_host(worked.d, host.format(port=port))
    assert status in {400, 421}, host


def test_missing_host_is_rejected(worked: Worked) -> None:
    d = worked.d
    assert get_with_host(d, None) in {400, 421}
    # HTTP/1.0 may leave Host out; the guard still wants a loopback name.
    status, _ = raw(d, f"GET /v1/status HTTP/1.0\nAuthorization: Bearer {d.token}")
    assert status in {400, 421}


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "127.0.0.1",
        "127.0.0.1:{port}",
        "[::1]",
        "[::1]:{port}",
        "tierd.localhost:{port}",
        "127.0.0.2:{port}",
    ],
)
def test_loopback_host_is_accepted(worked: Worked, host: str) -> None:
    port = urlsplit(worked.d.url).port
    assert get_with_host(worked.d, host.format(port=port)) == 200


# --- file modes -------------------------------------------------------------------------------


def test_every_file_the_daemon_keeps_is_private(worked: Worked) -> None:
    """New files (umask 077) and the world-readable ones the fixture left before the start."""
    home = worked.d.home
    names = {p.name for p in home.iterdir()}
    # The work really reached the disk: both databases, the live WAL, the discovery file.
    assert {
        "tierd.db",
        "tierd.db-wal",
        "tierd.db-shm",
        "checkpoints.db",
        "daemon.json",
        "token",
        "config.toml",
    } <= names, names
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in home.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode & 0o077 == 0, (path, oct(mode))


# --- the planted key --------------------------------------------------------------------------


def needles() -> dict[str, bytes]:
    """The key as it could appear: whole, a long prefix, its random part, base64 at any
    alignment, and JSON- or URL-escaped forms are the same bytes for this alphabet."""
    found = {
        "key": KEY.encode(),
        "prefix": KEY[:28].encode(),
        "random part": KEY.removeprefix("sk-tierdplanted-").encode(),
    }
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + KEY.encode())
        # Drop the characters that mix in the padding or the neighbouring bytes.
        found[f"base64+{shift}"] = encoded[4:-4]
        found[f"base64url+{shift}"] = base64.urlsafe_b64encode(b"\0" * shift + KEY.encode())[4:-4]
    return found


def leaks(where: str, data: bytes) -> list[str]:
    return [f"{where}: {name}" for name, needle in needles().items() if needle in data]


def api_outputs(w: Worked) -> dict[str, bytes]:
    d = w.d
    out: dict[str, bytes] = {}
    with d.http() as h:
        for path in (
            "/healthz",
            "/v1/status",
            "/v1/config",
            "/openapi.json",
            "/v1/tasks?limit=500",
            *(f"/v1/tasks/{t}" for t in w.tasks.values()),
        ):
            r = h.get(path)
            assert r.status_code == 200, path
            out[path] = r.content
        calls: list[tuple[str, Any]] = [
            ("daemon/status", None),
            ("config/get", {}),
            ("rpc/discover", None),
            ("task/list", {"limit": 500}),
        ]
        calls += [("task/get", {"task_id": t}) for t in w.tasks.values()]
        calls += [
            ("config/get", {"key": f"models.{r}.api_key_env"})
            for r in ("planner", "executor", "orchestrator")
        ]
        for method, params in calls:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
            if params is not None:
                body["params"] = params
            r = h.post("/rpc", json=body)
            assert "result" in r.json(), (method, r.text)
            out[f"rpc {method} {params}"] = r.content
    return out


def all_events(d: DaemonProcess) -> list[dict[str, Any]]:
    """Every event from the start, over SSE, until the stream goes quiet."""
    client = d.client()
    events: list[dict[str, Any]] = []
    try:
        for ev in client.events(last_event_id=0, timeout=3):
            events.append(ev)
    except TimeoutError:
        pass
    finally:
        client.close()
    return events


def test_planted_key_reaches_the_provider_and_nowhere_else(worked: Worked) -> None:
    # Not vacuous: every model call carried the key, and the tasks did what they should.
    assert worked.recorder.seen and set(worked.recorder.seen) == {f"Bearer {KEY}"}
    assert worked.executed_by == {FALLBACK.removeprefix("openai/")}  # the fallback did it
    d = worked.d
    with d.http() as h:
        echoed = h.get(f"/v1/tasks/{worked.tasks['echoed']}").json()
        all_fail = h.get(f"/v1/tasks/{worked.tasks['all_fail']}").json()
    assert "Incorrect API key provided: ***" in json.dumps(echoed)  # scrubbed, not dropped
    assert all_fail["error"] and "every attempt failed" in all_fail["error"]

    found: list[str] = []
    events = all_events(d)
    assert {e["task_id"] for e in events} >= set(worked.tasks.values())
    found += leaks("events (SSE)", json.dumps(events).encode())
    for where, data in api_outputs(worked).items():
        found += leaks(where, data)
    for path in sorted(d.home.rglob("*")):
        if path.is_file():
            found += leaks(str(path), path.read_bytes())
    for log in ("daemon.out", "daemon.err"):
        found += leaks(log, (d.logs / log).read_bytes())
    assert not found, found


def test_notify_hook_gets_no_key(worked: Worked) -> None:
    failed = {worked.tasks["all_fail"], worked.tasks["echoed"]}
    runs = wait_for(
        lambda: [
            n
            for n in (
                map(json.loads, worked.hook_log.read_text().splitlines())
                if worked.hook_log.exists()
                else []
            )
            if n["argv"][0] in failed
        ],
        30,
    )
    for run in runs:
        assert KEY_ENV not in run["env"]
        assert not leaks("notify hook", json.dumps(run).encode())
    # The hook is the user's program: it runs with the user's umask, not the daemon's 077.
    user_umask = os.umask(0o022)
    os.umask(user_umask)
    assert stat.S_IMODE(worked.hook_log.stat().st_mode) == 0o666 & ~user_umask
    assert os.environ.get(KEY_ENV) is None  # the key lived only in the daemon's env


def test_daemon_logs_are_not_empty(worked: Worked) -> None:
    # The log search above is only worth something if the daemon logged: at debug level it
    # announces itself and reports each failed model call.
    text = (worked.d.logs / "daemon.err").read_text()
    assert "listening on" in text
    # tierd's own lines, not only uvicorn's: every primary executor call fails in this scenario.
    assert "model call failed: role=executor" in text
