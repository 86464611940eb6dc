"""A small synchronous client for the daemon's API, used by the CLI, scripts and tests.

It finds the daemon through daemon.json and speaks JSON-RPC for calls and SSE for events.
It is built on the standard library's `http.client` alone (no httpx, litellm or langgraph),
so a command that only talks to the daemon starts in a few tens of milliseconds. Calls reuse
one keep-alive connection; every event stream has a connection of its own.

A daemon.json can outlive its daemon with its pid and port taken by other programs, so
`discover` first asks `/healthz` without the token and sends the token only once the answer
echoes the instance id daemon.json holds (`daemon.home.discovery.identity_problem`);
otherwise no daemon answers for this home.
"""

from __future__ import annotations

import http.client
import json
import secrets
import select
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from daemon import __version__
from daemon.home.discovery import Discovery, identity_problem, pid_alive, read_discovery
from daemon.home.paths import Homes, resolve_homes

#: Errors that mean the daemon is not there (or went away) rather than that it said no.
_GONE = (
    ConnectionRefusedError,
    ConnectionResetError,
    BrokenPipeError,
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    FileNotFoundError,
)


class DaemonNotRunning(RuntimeError):
    """No daemon answers for this home (the CLI exits 3)."""

    def __init__(self, detail: str = "", *, hint: bool = True) -> None:
        text = "no tierd daemon is running for this home" + (f" ({detail})" if detail else "")
        if hint:
            text += ". Start one with `tierd serve` (or try `tierd demo`)."
        super().__init__(text)


class DaemonNotResponding(DaemonNotRunning):
    """The daemon accepted the connection but did not answer in time."""

    def __init__(self, url: str, timeout: float | None) -> None:
        RuntimeError.__init__(
            self,
            f"the tierd daemon at {url} did not answer within "
            f"{timeout:g}s; it may be overloaded or stuck",
        )


class ApiError(RuntimeError):
    """An error answer from the daemon, with its JSON-RPC code (or HTTP status) and data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _http_error(status: int, body: bytes) -> ApiError:
    """An ApiError for a non-200 answer: the guard's and REST's bodies are {"error": {...}}."""
    try:
        err = json.loads(body)["error"]
        return ApiError(
            int(err.get("code", status)),
            str(err.get("message", "")) or f"HTTP {status}",
            err.get("data", err),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        return ApiError(status, f"HTTP {status}" + (f": {text[:300]}" if text else ""))


def iter_sse(lines: Iterator[bytes]) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream into events ({"id", "event", "data"}), per the HTML spec."""
    data: list[str] = []
    event: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data or event:
                event["data"] = "\n".join(data)
                yield event
            data, event = [], {}
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive pings
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in {"id", "event", "retry"}:
            event[name] = value


class Client:
    def __init__(
        self, url: str, token: str, *, timeout: float = 30.0, daemon_version: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the daemon URL must be http://host:port, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self.token = token
        self.timeout = timeout
        self.daemon_version = daemon_version
        self._auth = {"Authorization": f"Bearer {token}"}
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # one request at a time on the shared connection
        self._next_id = 0

    @classmethod
    def discover(cls, homes: Homes | None = None, timeout: float = 30.0) -> Client:
        homes = homes or resolve_homes()
        info = read_discovery(homes.discovery_file)
        if info is None:
            raise DaemonNotRunning(f"no {homes.discovery_file}")
        if not pid_alive(info.pid):
            raise DaemonNotRunning(f"the daemon with pid {info.pid} is gone")
        try:
            found = cls(info.url, info.token, timeout=timeout, daemon_version=info.version)
        except ValueError as exc:  # a URL that is not http://host:port: not ours
            raise DaemonNotRunning(f"{homes.discovery_file}: {exc}") from None
        found.verify(info)
        return found

    def verify(self, info: Discovery) -> None:
        """Make sure the server at our URL is the daemon `info` describes before any request
        carries the token: ask `/healthz` (open, no token) and compare the instance id it
        echoes with daemon.json's. Raises DaemonNotRunning (and closes) when it is not."""
        status, payload = self.request("GET", "/healthz", auth=False)
        health: object = None
        if status == 200:
            try:
                health = json.loads(payload)
            except ValueError:
                health = None
        problem = identity_problem(info, health)
        if problem is not None:
            self.close()
            raise DaemonNotRunning(f"no daemon answering: {problem}")

    @property
    def version_mismatch(self) -> str | None:
        if self.daemon_version and self.daemon_version != __version__:
            return (
                f"the running daemon is tierd {self.daemon_version}, this client is "
                f"{__version__}: restart the daemon to use the same version"
            )
        return None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout or 30.0)
        try:
            conn.connect()
        except _GONE as exc:
            conn.close()
            raise DaemonNotRunning(f"nothing answers at {self.url}") from exc
        except TimeoutError as exc:
            conn.close()
            raise DaemonNotResponding(self.url, timeout or 30.0) from exc
        except OSError as exc:
            conn.close()
            raise DaemonNotRunning(f"cannot connect to {self.url}: {exc.strerror or exc}") from exc
        assert conn.sock is not None
        conn.sock.settimeout(timeout)
        return conn

    def _idle_conn(self) -> http.client.HTTPConnection:
        """The shared keep-alive connection, replaced if the server has closed it meanwhile."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:  # an idle connection that is readable was closed by the server
                self._drop()
                conn = None
        if conn is None or conn.sock is None:
            conn = self._connection(self.timeout)
            self._conn = conn
        return conn

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, bytes]:
        """Send one request on the keep-alive connection; return (status, body bytes).
        `auth=False` sends no token (for `/healthz`, before the server is known to be ours)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {**(self._auth if auth else {}), "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            conn = self._idle_conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except TimeoutError as exc:
                self._drop()
                raise DaemonNotResponding(self.url, self.timeout) from exc
            except _GONE as exc:
                self._drop()
                raise DaemonNotRunning(f"the connection to {self.url} was closed") from exc
            except http.client.HTTPException as exc:  # not an HTTP answer: not a daemon
                self._drop()
                raise DaemonNotRunning(f"the server at {self.url} does not speak HTTP") from exc
            if resp.will_close:
                self._drop()
            return resp.status, payload

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}}
        status, payload = self.request("POST", "/rpc", body)
        if status != 200:
            raise _http_error(status, payload)
        try:
            doc = json.loads(payload)
        except ValueError:
            raise ApiError(status, f"not a JSON-RPC answer: {payload[:200]!r}") from None
        if "error" in doc:
            e = doc["error"]
            raise ApiError(e["code"], e["message"], e.get("data"))
        return doc["result"]

    # --- API -------------------------------------------------------------------------------

    def submit(
        self,
        goal: str,
        context: str = "",
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        repo: str | None = None,
        base: str | None = None,
        include_uncommitted: bool = False,
    ) -> dict[str, Any]:
        """Submit a task (a code task with `repo`, an absolute path). Every submit carries an
        idempotency key (a fresh one unless given), so when the connection drops before the
        answer the submit is sent once more with the same key: the daemon then answers the
        task it may already have made (duplicate=true) instead of making a second one."""
        params: dict[str, Any] = {
            "goal": goal,
            "context": context,
            "options": options or {},
            "idempotency_key": idempotency_key or secrets.token_urlsafe(24),
        }
        # Sent only when used: a daemon from before code tasks refuses fields it does not know.
        if repo is not None:
            params["repo"] = repo
        if base is not None:
            params["base"] = base
        if include_uncommitted:
            params["include_uncommitted"] = True
        try:
            return self.rpc("task/submit", params)
        except DaemonNotResponding:
            raise  # it may still be working on it: waiting again would double the wait
        except DaemonNotRunning:
            # A keep-alive connection the server closed as the request went out, or a daemon
            # that died: once more, safely; a daemon that is gone fails this the same way.
            return self.rpc("task/submit", params)

    def get(self, task_id: str) -> dict[str, Any]:
        return self.rpc("task/get", {"task_id": task_id})

    def list(
        self, state: str | list[str] | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """A page of tasks, newest first; `state`: one state, or a list meaning any of them."""
        params: dict[str, Any] = {"limit": limit}
        if isinstance(state, list) and len(state) == 1:
            state = state[0]  # a daemon from before lists of states takes one
        if state:
            params["state"] = state
        if cursor:
            params["cursor"] = cursor
        return self.rpc("task/list", params)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.rpc("task/cancel", {"task_id": task_id})

    def delete(self, task_id: str) -> dict[str, Any]:
        """Delete an ended task and all the daemon keeps of it; what was removed."""
        return self.rpc("task/delete", {"task_id": task_id})

    def answer(self, task_id: str, answers: dict[str, str]) -> dict[str, Any]:
        return self.rpc("task/answer", {"task_id": task_id, "answers": answers})

    def approve(
        self,
        task_id: str,
        decision: str = "approve",
        comment: str | None = None,
        apply: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"task_id": task_id, "decision": decision}
        if comment is not None:
            params["comment"] = comment
        if apply is not None:
            params["apply"] = apply
        return self.rpc("task/approve", params)

    def status(self) -> dict[str, Any]:
        return self.rpc("daemon/status")

    def login_link(self) -> dict[str, Any]:
        """A one-time dashboard login link: {"url", "expires_in_s"} (bearer token only)."""
        status, payload = self.request("POST", "/v1/dashboard/login-links")
        if status != 200:
            raise _http_error(status, payload)
        return dict(json.loads(payload))

    def config_get(self, key: str | None = None) -> dict[str, Any]:
        return self.rpc("config/get", {"key": key} if key else {})

    def config_set(self, key: str, value: Any) -> dict[str, Any]:
        return self.rpc("config/set", {"key": key, "value": value})

    def events(
        self,
        task_id: str | None = None,
        last_event_id: int | None = None,
        timeout: float | None = None,
        *,
        follow: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Follow the event stream; each item is an event dict with its id.

        `timeout` bounds the wait for the next byte (the daemon pings every 10 s); None waits
        for ever. A timeout raises TimeoutError; resume with `last_event_id`. A task's stream
        ends by itself once the task has ended (its events replayed), or with `follow=False`
        once the events stored so far are sent.
        """
        path = f"/v1/tasks/{quote(task_id, safe='')}/events" if task_id else "/v1/events"
        if task_id and not follow:
            path += "?follow=false"
        headers = {**self._auth, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        conn = self._connection(timeout)
        try:
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            except _GONE as exc:
                raise DaemonNotRunning(f"the connection to {self.url} was closed") from exc
            if resp.status != 200:
                raise _http_error(resp.status, resp.read())
            for sse in iter_sse(iter(resp.readline, b"")):
                if sse["data"]:
                    yield json.loads(sse["data"])
        finally:
            conn.close()
