"""The guard in front of every request: Host, Origin, bearer token and body size.

A local daemon is reachable by every web page the user opens (through DNS rebinding or a
plain fetch to 127.0.0.1), so it checks the Host header against loopback names, refuses any
Origin not explicitly allowed, and wants a bearer token on everything but /healthz (a token
in the query string is refused outright: URLs leak into logs and Referer headers). A request
with two Host, Origin or Authorization headers is refused, since which one a parser keeps
varies. WebSocket requests get the same checks. An origin in `server.allowed_origins` gets
CORS headers, and its preflight (which never carries a token) is answered. It is a pure ASGI
middleware so streaming responses (SSE) pass through untouched.

Bodies are capped at `server.max_body_bytes`, except a submit that carries attachments (POST
/v1/tasks or /rpc): its cap is raised by what `attachments.max_task_bytes` of files take as
base64 (`attachment_body_cap`). A body over the ordinary cap passes only when it does carry
attachments (a multipart form, or JSON whose `attachments` list is not empty); the service
then holds each file to its own limits.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import math
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
#: The routes a submit with attachments comes through; only their bodies may pass the
#: ordinary cap.
ATTACHMENT_PATHS = frozenset({"/v1/tasks", "/rpc"})
#: Room for what wraps the files beside their base64: names, types, form headers.
ATTACHMENT_SLACK_BYTES = 1 << 20


#: A Host header: a bracketed IPv6 literal or a name without colons, then an optional port.
#: Anything else (userinfo, a second colon, text after the bracket) is not a Host header.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]@/\s]+))(?::\d{1,5})?")
#: Headers that must come at most once: with two, which one counts depends on the parser.
_SINGLE_RAW = frozenset({b"host", b"origin", b"authorization"})


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


@functools.lru_cache(maxsize=256)
def _loopback_host(host_header: str) -> bool:
    """`is_loopback_name(host_name(...))`, remembered: a client sends the same Host header on
    every request, and parsing an address is most of the guard's time otherwise."""
    return is_loopback_name(host_name(host_header))


def declares_over(content_length: str, most: int) -> bool:
    """Whether a Content-Length header declares more than `most` bytes. Only ASCII digits
    are a length (`isdigit` alone takes "²", which `int` refuses); anything else is left to
    the capped read of the body."""
    text = content_length.strip()
    return text.isascii() and text.isdigit() and int(text) > most


def attachment_body_cap(max_body_bytes: int, max_task_bytes: int) -> int:
    """The body cap of a submit carrying attachments: the ordinary cap, plus a task's worth of
    files as base64 (4 bytes per 3), plus room for what wraps them."""
    return max_body_bytes + 4 * math.ceil(max_task_bytes / 3) + ATTACHMENT_SLACK_BYTES


def _submit_with_files(doc: Any) -> bool:
    """Whether a parsed REST or JSON-RPC body submits a task with attachments."""
    if isinstance(doc, list):  # a JSON-RPC batch
        return any(_submit_with_files(item) for item in doc)
    if not isinstance(doc, dict):
        return False
    if "method" in doc:
        params = doc.get("params")
        return doc.get("method") == "task/submit" and _submit_with_files(params)
    files = doc.get("attachments")
    return isinstance(files, list) and bool(files)


async def carries_attachments(scope: Scope, body: bytes) -> bool:
    """Whether a request to an attachment path submits attachments: a multipart form on
    /v1/tasks, or JSON whose attachments list is not empty (parsed on a worker thread: the
    body is large, or this would not be asked)."""
    content_type = _header(scope, b"content-type").lower()
    if scope["path"] == "/v1/tasks" and content_type.startswith("multipart/form-data"):
        return True
    try:
        doc = await asyncio.to_thread(json.loads, body)
    except (ValueError, RecursionError):
        return False
    return _submit_with_files(doc)


def _header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name), "")


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
        max_attachment_body_bytes: int | None = None,
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
        #: The cap of a submit carrying attachments (`attachment_body_cap`); None: no raise.
        self._max_attachment_body = max(max_body_bytes, max_attachment_body_bytes or 0)
        self._allow_remote = allow_remote

    def refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Why this request may not pass (status, message, extra headers), or None."""
        # Names as bytes, values decoded only for the headers looked at: this runs for every
        # request. Servers give names in lower case; lowering again costs little.
        raw: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", []):
            name = k.lower()
            if name in _SINGLE_RAW and name in raw:
                return 400, f"more than one {name.decode('latin-1').title()} header", []
            raw[name] = v
        host = raw.get(b"host", b"").decode("latin-1")
        if not self._allow_remote and not _loopback_host(host):
            # 421: this server does not answer for that name (DNS rebinding defence).
            return (
                421,
                ("Host header must name a loopback address (localhost, 127.0.0.1 or [::1])"),
                [],
            )
        origin_raw = raw.get(b"origin")
        origin = None if origin_raw is None else origin_raw.decode("latin-1")
        if (
            origin is not None
            and origin.rstrip("/").lower() not in self._origins
            and not (self._dashboard is not None and self._dashboard.admits_origin(origin, host))
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
            and b"access-control-request-method" in raw
        ):
            # An allowed page's CORS preflight: browsers never send a token with it. It is
            # answered by the CORS layer and runs nothing.
            return None
        query_string = scope.get("query_string", b"")
        query = parse_qs(query_string.decode("latin-1")) if query_string else {}
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
        authorization = raw.get(b"authorization")
        scheme, _, supplied = (authorization or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            supplied.strip().encode(), self._token
        ):
            if (
                self._dashboard is not None
                and authorization is None
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
            await self._with_body(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body under its cap (the raised one for a submit with attachments), then
        pass the request on with it."""
        cap = self._max_body
        if scope["method"] == "POST" and scope["path"] in ATTACHMENT_PATHS:
            cap = self._max_attachment_body
        declared = _header(scope, b"content-length") or None
        if declared is not None and declares_over(declared, cap):
            await _reply(send, 413, self._too_large(cap))
            return
        # Read the body here, so a chunked body without a length is capped as well.
        try:
            body = await read_body(receive, cap)
        except BodyTooLarge:
            await _reply(send, 413, self._too_large(cap))
            return
        if body is None:  # the client went away
            return
        if len(body) > self._max_body and not await carries_attachments(scope, body):
            await _reply(send, 413, self._too_large(self._max_body))
            return
        await self.app(scope, replaying(body, receive), send)

    def _too_large(self, cap: int) -> str:
        if cap == self._max_body:
            return f"request body over {cap} bytes"
        return (
            f"request body over {cap} bytes (server.max_body_bytes, plus the base64 of "
            "attachments.max_task_bytes of attachments)"
        )
