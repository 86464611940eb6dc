"""What the dashboard's tests share: the daemon with the dashboard on the simulator, Chromium,
signing in through a one-time link, a page on another origin, and where screenshots go.

Chromium is Debian's `chromium` package, driven by playwright (which cannot download its own
browser here). A machine without it fails the browser tests, naming the package: they never
skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support import ROOT
from support.daemon import DaemonProcess, wait_for

LAUNCHER = Path(__file__).with_name("dashboard_launcher.py")
#: Where screenshots go: gitignored test artefacts (TIERD_ARTIFACTS overrides the folder).
ARTIFACTS = Path(os.environ.get("TIERD_ARTIFACTS", ROOT / "tests" / "artifacts")) / "dashboard"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: Fast simulated models: a stream takes a fraction of a second.
FAST = {"planner": 0.1, "orchestrator": 0.1, "executor": 0.2}


def page_errors(page: Any) -> list[str]:
    """Script errors of `page`, as they come (a refused request the page expects is not one)."""
    found: list[str] = []
    page.on("pageerror", lambda exc: found.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda m: (
            found.append(f"console: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    return found


def sign_in(browser: Any, daemon: DashboardDaemon, viewport: dict[str, int]) -> Any:
    """A new browser context signed in through a one-time link; its first page, on the inbox."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport=viewport).new_page()
    page.goto(daemon.login_link())
    expect(page.get_by_role("heading", name="Needs you", level=1)).to_be_visible()
    return page


def plan(*streams: dict[str, Any]) -> dict[str, Any]:
    """A simulator plan of these streams (id, and optionally depends_on)."""
    return {
        "streams": [
            {
                "id": s["id"],
                "title": s.get("title", s["id"].capitalize()),
                "job": f"Do {s['id']}.",
                "output_definition": f"The {s['id']} part.",
                "ownership": [s["id"]],
                "depends_on": s.get("depends_on", []),
            }
            for s in streams
        ]
    }


class DashboardDaemon(DaemonProcess):
    """`tierd serve` through the launcher (dashboard wired, test clock), logs in files."""

    def __init__(self, home: Path, clock_file: Path) -> None:
        # Fresh: the launcher patches the clock before the daemon's modules are imported.
        super().__init__(home, {"TIERD_TEST_CLOCK_FILE": str(clock_file)}, logs=home, fresh=True)
        self.clock_file = clock_file
        clock_file.write_text("0", encoding="utf-8")

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        command = [sys.executable, str(LAUNCHER), "serve", "--port", "0", *self.args, *args]
        with (
            open(self.home / "daemon.out", "a", encoding="utf-8") as out,
            open(self.home / "daemon.err", "a", encoding="utf-8") as err,
        ):
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=err, text=True
            )

    def skew_clock(self, seconds: float) -> None:
        """Move the dashboard's clock `seconds` ahead of real time (0: back to real time)."""
        self.clock_file.write_text(str(seconds), encoding="utf-8")

    def login_link(self) -> str:
        with self.http() as h:
            answer = h.post("/v1/dashboard/login-links")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["url"])

    def task(self, task_id: str) -> dict[str, Any]:
        with self.http() as h:
            return dict(h.get(f"/v1/tasks/{task_id}").json())

    def submit(self, goal: str, **options: Any) -> str:
        with self.http() as h:
            answer = h.post("/v1/tasks", json={"goal": goal, "options": options})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["task_id"])

    def wait_state(self, task_id: str, *states: str, timeout: float = 90.0) -> dict[str, Any]:
        return dict(
            wait_for(lambda: (t := self.task(task_id))["state"] in states and t, timeout=timeout)
        )

    def set_config(self, key: str, value: Any) -> None:
        with self.http() as h:
            answer = h.put("/v1/config", json={"key": key, "value": value})
        assert answer.status_code == 200, answer.text

    def cancel_live_tasks(self) -> None:
        with self.http() as h:
            for t in h.get("/v1/tasks", params={"limit": 500}).json()["tasks"]:
                if t["state"] not in ("completed", "failed", "canceled"):
                    h.post(f"/v1/tasks/{t['id']}/cancel")

    def log_tail(self) -> str:
        return (self.home / "daemon.err").read_text(encoding="utf-8")[-4000:]


@contextmanager
def foreign_site(page_html: str) -> Iterator[str]:
    """Another origin on loopback (a port of its own) serving one page; yields its URL."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class CuttableProxy:
    """A loopback TCP proxy to the daemon whose open connections a test can cut at once (a
    dropped network, as a browser sees it), while new ones still get through."""

    def __init__(self, target_url: str) -> None:
        parts = target_url.removeprefix("http://").split(":")
        self._target = (parts[0], int(parts[1]))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        """Close every connection open now."""
        with self._lock:
            now = list(self._open)
        for s in now:
            self._close(s)

    def close(self) -> None:
        self._listener.close()
        self.cut()
