"""The guard in front of every request: Host, Origin, bearer token and body size.

A local daemon is reachable by every web page the user opens (through DNS rebinding or a
plain fetch to 127.0.0.1), so it checks the Host header against loopback names, refuses any
Origin not explicitly allowed, and wants a bearer token on everything but /healthz. It is a
pure ASGI middleware so streaming responses (SSE) pass through untouched.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})


def host_name(host_header: str) -> str:
    """The name part of a Host header: 'localhost:8737' -> 'localhost', '[::1]:1' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _reply(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]
                 | None = None) -> None:
    body = json.dumps({"error": {"status": status, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, *, token: str, allowed_origins: list[str],
                 max_body_bytes: int, allow_remote: bool = False) -> None:
        self.app = app
        self._token = token.encode()
        self._origins = {o.rstrip("/").lower() for o in allowed_origins}
        self._max_body = max_body_bytes
        self._allow_remote = allow_remote

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if not self._allow_remote and not is_loopback_name(host_name(headers.get("host", ""))):
            # 421: this server does not answer for that name (DNS rebinding defence).
            await _reply(send, 421, "Host header must name a loopback address "
                                    "(localhost, 127.0.0.1 or [::1])")
            return
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self._origins:
            await _reply(send, 403, f"Origin {origin!r} is not allowed; add it to "
                                    "server.allowed_origins to let a browser page call tierd")
            return
        if scope["path"] not in OPEN_PATHS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if "token" in query or "access_token" in query:
                await _reply(send, 401, "a token in the query string is not accepted; send "
                                        "'Authorization: Bearer <token>'")
                return
            auth = headers.get("authorization", "")
            scheme, _, supplied = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    supplied.strip().encode(), self._token):
                await _reply(send, 401, "missing or wrong bearer token: send 'Authorization: "
                                        "Bearer <token>' with the token from daemon.json",
                             [(b"www-authenticate", b'Bearer realm="tierd"')])
                return
        if scope["method"] in {"POST", "PUT", "PATCH"}:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self._max_body:
                await _reply(send, 413, f"request body over {self._max_body} bytes")
                return
            # Read the body here, so a chunked body without a length is capped as well.
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body:
                    await _reply(send, 413, f"request body over {self._max_body} bytes")
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)
