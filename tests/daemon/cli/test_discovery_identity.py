"""A stale daemon.json never sends the token elsewhere (issue 14 #10).

daemon.json names a live pid (this test's own) and a URL where another HTTP server answers: a
tiny one run by the test that records every request. The CLI must ask `/healthz` without the
token, see that the answer does not echo daemon.json's instance id, and stop with exit 3 ("no
tierd daemon is running"): the server never sees an Authorization header. When the server
does echo the instance id, the token goes (the check is not simply "never send it").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import ROOT

from daemon.home.discovery import HEALTH_INSTANCE_FIELD

TOKEN = "stale-token-" + "s" * 40
INSTANCE = "c0ffee" * 5


class Recorder(ThreadingHTTPServer):
    """An HTTP server that is not tierd; `health` is what its /healthz answers (None: 404)."""

    daemon_threads = True

    def __init__(self, health: dict[str, object] | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.health = health
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/healthz" and self.server.health is not None:
            status, body = 200, json.dumps(self.server.health).encode()
        elif self.path == "/rpc" and self.server.health is not None:
            error = {"code": -32601, "message": "recorder: no such method"}
            status, body = 200, json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}).encode()
        else:
            status, body = 404, b"<html><body>404 Not Found</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def recorder(health: dict[str, object] | None) -> Iterator[Recorder]:
    server = Recorder(health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def stale_discovery(home: Path, url: str, instance: str | None = INSTANCE) -> None:
    data: dict[str, object] = {"url": url, "token": TOKEN, "pid": os.getpid(), "version": "0"}
    if instance is not None:
        data[HEALTH_INSTANCE_FIELD] = instance
    (home / "daemon.json").write_text(json.dumps(data), encoding="utf-8")


def tierd(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=ROOT,
        env={**os.environ, "TIERD_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("health", "instance"),
    [
        (None, INSTANCE),  # a web server answering 404 to everything
        ({"ok": True}, INSTANCE),  # something like a tierd that cannot say who it is
        ({"ok": True, HEALTH_INSTANCE_FIELD: "another-daemon"}, INSTANCE),  # another tierd
        ({"ok": True, HEALTH_INSTANCE_FIELD: INSTANCE}, None),  # an old daemon.json
    ],
    ids=["404", "no-instance", "other-instance", "old-discovery-file"],
)
def test_a_server_that_is_not_the_daemon_never_gets_the_token(
    tmp_path: Path, health: dict[str, object] | None, instance: str | None
) -> None:
    with recorder(health) as server:
        stale_discovery(tmp_path, server.url, instance)
        for args in (["status"], ["ls", "--json"], ["show", "t1"], ["cancel", "t1"]):
            proc = tierd(tmp_path, *args)
            assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
            assert "no tierd daemon is running" in proc.stderr, proc.stderr
            assert proc.stdout == ""
            assert "404" not in proc.stderr  # the other server's answer is not ours to print
        # The config command falls back to the file, as with no daemon at all.
        set_ = tierd(tmp_path, "config", "set", "rules.parallelize", "never", "--json")
        assert set_.returncode == 0, set_.stderr
        assert json.loads(set_.stdout)["applied"] is False
    paths = [path for _, path, _ in server.requests]
    if instance is not None:
        assert paths and set(paths) == {"/healthz"}, paths  # it asked, and went no further
    assert [auth for _, _, auth in server.requests if auth is not None] == []


def test_the_token_goes_once_the_instance_id_matches(tmp_path: Path) -> None:
    with recorder({"ok": True, HEALTH_INSTANCE_FIELD: INSTANCE}) as server:
        stale_discovery(tmp_path, server.url)
        proc = tierd(tmp_path, "status")
    assert proc.returncode == 1 and "recorder: no such method" in proc.stderr, proc.stderr
    assert [(m, p) for m, p, _ in server.requests] == [("GET", "/healthz"), ("POST", "/rpc")]
    assert server.requests[0][2] is None  # the identity question carries no token
    assert server.requests[1][2] == f"Bearer {TOKEN}"
