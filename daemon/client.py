"""A small synchronous client for the daemon's API, used by the CLI, scripts and tests.

It finds the daemon through daemon.json and speaks JSON-RPC for calls and SSE for events.
It imports neither litellm nor langgraph, so commands that only talk to the daemon start fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from . import __version__
from .discovery import pid_alive, read_discovery
from .homes import Homes, resolve_homes


class DaemonNotRunning(RuntimeError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "no tierd daemon is running for this home" + (f" ({detail})" if detail else "")
            + ". Start one with `tierd serve` (or try `tierd demo`).")


class ApiError(RuntimeError):
    """An error answer from the daemon, with its JSON-RPC code and data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class Client:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 daemon_version: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.daemon_version = daemon_version
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})
        self._next_id = 0

    @classmethod
    def discover(cls, homes: Homes | None = None, timeout: float = 30.0) -> Client:
        homes = homes or resolve_homes()
        info = read_discovery(homes.discovery_file)
        if info is None:
            raise DaemonNotRunning(f"no {homes.discovery_file}")
        if not pid_alive(info.pid):
            raise DaemonNotRunning(f"the daemon with pid {info.pid} is gone")
        return cls(info.url, info.token, timeout=timeout, daemon_version=info.version)

    @property
    def version_mismatch(self) -> str | None:
        if self.daemon_version and self.daemon_version != __version__:
            return (f"the running daemon is tierd {self.daemon_version}, this client is "
                    f"{__version__}: restart the daemon to use the same version")
        return None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}}
        try:
            resp = self._http.post("/rpc", json=body)
        except httpx.ConnectError as exc:
            raise DaemonNotRunning(f"cannot connect to {self.url}") from exc
        if resp.status_code != 200:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, err.get("message", resp.text), err)
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, resp.text) from None
        doc = resp.json()
        if "error" in doc:
            e = doc["error"]
            raise ApiError(e["code"], e["message"], e.get("data"))
        return doc["result"]

    # --- API -------------------------------------------------------------------------------

    def submit(self, goal: str, context: str = "",
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.rpc("task/submit", {"goal": goal, "context": context,
                                        "options": options or {}})

    def get(self, task_id: str) -> dict[str, Any]:
        return self.rpc("task/get", {"task_id": task_id})

    def list(self, state: str | None = None, limit: int = 50,
             cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        if cursor:
            params["cursor"] = cursor
        return self.rpc("task/list", params)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.rpc("task/cancel", {"task_id": task_id})

    def answer(self, task_id: str, answers: dict[str, str]) -> dict[str, Any]:
        return self.rpc("task/answer", {"task_id": task_id, "answers": answers})

    def approve(self, task_id: str, decision: str = "approve",
                comment: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"task_id": task_id, "decision": decision}
        if comment is not None:
            params["comment"] = comment
        return self.rpc("task/approve", params)

    def status(self) -> dict[str, Any]:
        return self.rpc("daemon/status")

    def config_get(self, key: str | None = None) -> dict[str, Any]:
        return self.rpc("config/get", {"key": key} if key else {})

    def config_set(self, key: str, value: Any) -> dict[str, Any]:
        return self.rpc("config/set", {"key": key, "value": value})

    def events(self, task_id: str | None = None, last_event_id: int | None = None,
               timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Follow the event stream; each item is an event dict with its id."""
        path = f"/v1/tasks/{task_id}/events" if task_id else "/v1/events"
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        with connect_sse(self._http, "GET", path, headers=headers,
                         timeout=httpx.Timeout(timeout or 30.0, read=timeout)) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise ApiError(source.response.status_code, source.response.text)
            for sse in source.iter_sse():
                if sse.data:
                    yield json.loads(sse.data)
