"""The guard in front of every request: Host, Origin, bearer token and body size.

A local daemon is reachable by every web page the user opens (through DNS rebinding or a
plain fetch to 127.0.0.1), so it checks the Host header against loopback names, refuses any
Origin not explicitly allowed, and wants a bearer token on everything but /healthz (a token
in the query string is refused outright: URLs leak into logs and Referer headers). A request
with two Host, Origin or Authorization headers is refused, since which one a parser keeps
varies. WebSocket requests get the same checks. An origin in `server.allowed_origins` gets
CORS headers, and its preflight (which never carries a token) is answered. It is a pure ASGI
middleware so streaming responses (SSE) pass through untouched.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.middleware.cors import CORSMiddleware

from daemon.service.errors import INVALID_REQUEST, UNAUTHORIZED

if TYPE_CHECKING:  # type only: the dashboard's sessions import this module
    from daemon.api.dashboard import DashboardSessions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths served without the token: the health check, and the A2A agent card (clients fetch it
#: to learn how to authenticate; it holds no secret).
OPEN_PATHS = frozenset({"/healthz", "/.well-known/agent-card.json"})
#: Request headers an allowed browser page may send.
CORS_HEADERS = ("authorization", "content-type", "last-event-id")


#: A Host header: a bracketed IPv6 literal or a name without colons, then an optional port.
#: Anything else (userinfo, a second colon, text after the bracket) is not a Host header.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]@/\s]+))(?::\d{1,5})?")
#: Headers that must come at most once: with two, which one counts depends on the parser.
_SINGLE = frozenset({"host", "origin", "authorization"})


def host_name(host_header: str) -> str | None:
    """The name part of a Host header: 'localhost:8737' -> 'localhost', '[::1]:1' -> '::1';
    None when it is not a well-formed Host header."""
    found = _HOST.fullmatch(host_header.strip().lower())
    if found is None:
        return None
    return found.group("v6") or found.group("name")


def is_loopback_name(name: str | None) -> bool:
    """True for localhost, *.localhost (RFC 6761: they never leave the machine) and loopback
    IP literals; a rebinding attacker's DNS name is none of these."""
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def declares_over(content_length: str, most: int) -> bool:
    """Whether a Content-Length header declares more than `most` bytes. Only ASCII digits
    are a length (`isdigit` alone takes "²", which `int` refuses); anything else is left to
    the capped read of the body."""
    text = content_length.strip()
    return text.isascii() and text.isdigit() and int(text) > most


class BodyTooLarge(Exception):
    """The request body passed the cap `read_body` was given."""


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body, however it was chunked; None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the already-read body, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def refusal_body(status: int, message: str) -> bytes:
    """A refusal in the API's one error shape, `{"error": {"code", "message", "data"}}`: a
    missing or wrong token is -32004 (unauthorized), any other refusal of the request itself
    -32600 (invalid request); `data.status` is the HTTP status."""
    code = UNAUTHORIZED if status == 401 else INVALID_REQUEST
    return json.dumps(
        {"error": {"code": code, "message": message, "data": {"status": status}}}
    ).encode()


async def _reply(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = refusal_body(status, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: refuses what fails the checks, caps bodies, passes the rest on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        allowed_origins: list[str],
        max_body_bytes: int,
        allow_remote: bool = False,
        dashboard: DashboardSessions | None = None,
    ) -> None:
        self._token = token.encode()
        #: Browser sessions of the dashboard: a cookie plus a page key, never the token.
        self._dashboard = dashboard
        self._origins = {o.rstrip("/").lower() for o in allowed_origins}
        # Starlette's CORS layer gives the allowed pages the headers a browser needs to read
        # an answer; which origins get that far is decided here first.
        self.app: ASGIApp = (
            CORSMiddleware(
                app,
                allow_origins=sorted(self._origins),
                allow_methods=["GET", "POST"],
                allow_headers=list(CORS_HEADERS),
                max_age=600,
            )
            if self._origins
            else app
        )
        self._max_body = max_body_bytes
        self._allow_remote = allow_remote

    def refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Why this request may not pass (status, message, extra headers), or None."""
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            if name in _SINGLE and name in headers:
                return 400, f"more than one {name.title()} header", []
            headers[name] = v.decode("latin-1")
        if not self._allow_remote and not is_loopback_name(host_name(headers.get("host", ""))):
            # 421: this server does not answer for that name (DNS rebinding defence).
            return (
                421,
                ("Host header must name a loopback address (localhost, 127.0.0.1 or [::1])"),
                [],
            )
        origin = headers.get("origin")
        if (
            origin is not None
            and origin.rstrip("/").lower() not in self._origins
            and not (
                self._dashboard is not None
                and self._dashboard.admits_origin(origin, headers.get("host", ""))
            )
        ):
            return (
                403,
                (
                    f"Origin {origin!r} is not allowed; add it to "
                    "server.allowed_origins to let a browser page call tierd"
                ),
                [],
            )
        if scope["path"] in OPEN_PATHS:
            return None
        if self._dashboard is not None and self._dashboard.open_path(scope["path"]):
            return None
        if (
            origin is not None
            and scope.get("method") == "OPTIONS"
            and "access-control-request-method" in headers
        ):
            # An allowed page's CORS preflight: browsers never send a token with it. It is
            # answered by the CORS layer and runs nothing.
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query or "access_token" in query:
            # Refused even when right: URLs end up in logs, history and Referer headers.
            return (
                401,
                (
                    "a token in the query string is not accepted; send "
                    "'Authorization: Bearer <token>'"
                ),
                [],
            )
        scheme, _, supplied = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            supplied.strip().encode(), self._token
        ):
            if (
                self._dashboard is not None
                and "authorization" not in headers
                and self._dashboard.authenticate(scope)
            ):
                return None  # a dashboard session: its cookie and page key
            return (
                401,
                (
                    "missing or wrong bearer token: send 'Authorization: "
                    "Bearer <token>' with the token from daemon.json"
                ),
                [(b"www-authenticate", b'Bearer realm="tierd"')],
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if scope["type"] == "websocket":
            # No route speaks WebSocket today; one added later gets the same guard.
            if refused is not None:
                await send({"type": "websocket.close", "code": 1008, "reason": refused[1][:120]})
                return
            await self.app(scope, receive, send)
            return
        if refused is not None:
            await _reply(send, *refused)
            return
        if scope["method"] in {"POST", "PUT", "PATCH"}:
            declared = next(
                (
                    v.decode("latin-1")
                    for k, v in scope.get("headers", [])
                    if k.lower() == b"content-length"
                ),
                None,
            )
            if declared is not None and declares_over(declared, self._max_body):
                await _reply(send, 413, f"request body over {self._max_body} bytes")
                return
            # Read the body here, so a chunked body without a length is capped as well.
            try:
                body = await read_body(receive, self._max_body)
            except BodyTooLarge:
                await _reply(send, 413, f"request body over {self._max_body} bytes")
                return
            if body is None:  # the client went away
                return
            await self.app(scope, replaying(body, receive), send)
            return
        await self.app(scope, receive, send)
