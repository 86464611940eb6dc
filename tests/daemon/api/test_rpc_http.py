"""POST /rpc over plain ASGI (`rpc_http`), in process: what it answers itself, what it passes
on to FastAPI behind it, and a bug answered as FastAPI answers one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.api.rpc import RpcDispatcher
from daemon.api.rpc_http import RpcHttp


class NoService:
    async def status(self) -> Any:
        raise AssertionError("no method of the service is called in these tests")


async def call(
    app: Any, method: str, path: str, body: bytes = b""
) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages `app` sent, and which inner app saw the request."""
    sent: list[dict[str, Any]] = []
    behind: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        behind.append(f"{scope['method']} {scope['path']}")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app.app = inner
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)
    return sent, behind


def headers(start: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(start["headers"])


async def test_a_call_is_answered_with_its_reply_as_json() -> None:
    app = RpcHttp(None, RpcDispatcher(NoService()))  # type: ignore[arg-type]
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "no/such"}).encode()
    (start, content), behind = await call(app, "POST", "/rpc", body)
    assert behind == [] and start["status"] == 200
    reply = json.loads(content["body"])
    assert reply["error"]["code"] == -32601 and reply["id"] == 3
    assert headers(start) == {
        b"content-length": str(len(content["body"])).encode(),
        b"content-type": b"application/json",
    }


async def test_only_notifications_get_204_without_a_body() -> None:
    app = RpcHttp(None, RpcDispatcher(NoService()))  # type: ignore[arg-type]
    body = json.dumps({"jsonrpc": "2.0", "method": "no/such"}).encode()
    (start, content), _ = await call(app, "POST", "/rpc", body)
    assert start["status"] == 204 and start["headers"] == [] and content["body"] == b""


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/rpc"), ("POST", "/rpc/"), ("POST", "/v1/x")]
)
async def test_anything_else_goes_to_the_app_behind(method: str, path: str) -> None:
    app = RpcHttp(None, RpcDispatcher(NoService()))  # type: ignore[arg-type]
    sent, behind = await call(app, method, path)
    assert sent == [] and behind == [f"{method} {path}"]


async def test_a_bug_is_a_bare_500_and_raised_for_the_log() -> None:
    class Broken(RpcDispatcher):
        async def handle_body(self, body: bytes) -> Any:
            raise RuntimeError("a bug")

    app = RpcHttp(None, Broken(NoService()))  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError, match="a bug"):
        await app({"type": "http", "method": "POST", "path": "/rpc"}, receive, send)
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"Internal Server Error"
    assert headers(sent[0])[b"content-length"] == b"21"
