"""Both HTTP protocols the daemon may serve with (`connections`): h11's, and httptools' (used
when httptools is installed, as tierd's dependencies have it), in process under uvicorn with
small limits, over raw sockets.

The daemon-level tests (test_connections) run with whichever one the daemon picks; here each
one in turn: kept-alive and pipelined requests are answered, a head that never ends is
answered 408 and cut, a body that never ends is cut, a connection over the bound is answered
503 with Retry-After, and every connection still open is cut once its head's deadline passes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from daemon.api.connections import Bounded, BoundedH11Protocol, ConnectionLimits, protocol_for

LIMITS = ConnectionLimits(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=3)
#: How long a test waits for a cut that is due after half a second (a loaded machine).
WAIT_S = 20.0


def protocol_class(parser: str) -> type[Bounded]:
    if parser == "h11":
        return BoundedH11Protocol
    try:
        from daemon.api.httptools_bounded import BoundedHttpToolsProtocol
    except ImportError:
        pytest.fail("httptools is not installed: it is a dependency of tierd (pyproject.toml)")
    return BoundedHttpToolsProtocol


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"got %d bytes at %s" % (len(body), scope["path"].encode())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def serving(parser: str) -> AsyncIterator[int]:
    """uvicorn with the protocol under LIMITS; yields its port."""
    base = protocol_class(parser)

    class Limited(base):  # type: ignore[valid-type, misc]
        LIMITS = globals()["LIMITS"]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, http=Limited, lifespan="off", log_level="warning", proxy_headers=False)
    )
    running = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not running.done(), running
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await running
        sock.close()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything sent until the server closed the connection."""
    got = b""
    async with asyncio.timeout(WAIT_S):
        while chunk := await reader.read(65536):
            got += chunk
    return got


def request(path: str, body: bytes = b"", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.fixture(params=["h11", "httptools"])
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_kept_alive_and_pipelined_requests_are_answered(parser: str) -> None:
    async with serving(parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/one", b"12345"))
        first = await reader.readuntil(b"got 5 bytes at /one")
        assert first.startswith(b"HTTP/1.1 200 ")
        # Two at once, the second split across writes: both answered, in order.
        second = request("/three", b"abc", close=True)
        writer.write(request("/two", b"xy") + second[:10])
        await asyncio.sleep(0.05)
        writer.write(second[10:])
        rest = await until_closed(reader)
        assert rest.index(b"got 2 bytes at /two") < rest.index(b"got 3 bytes at /three"), rest
        writer.close()


async def test_a_head_that_never_ends_is_answered_408_and_cut(parser: str) -> None:
    async with serving(parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        answer = await until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"server.header_timeout_s" in answer and b'"code": -32600' in answer
        # After a first request, the next one's head gets its own deadline, and the cut too.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/ok") + b"POST /y HTTP/1.1\r\nHost: loc")
        answer = await until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer, answer


async def test_a_body_that_never_ends_is_cut(parser: str) -> None:
    async with serving(parser) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
        writer.write(head + b"only some")
        assert await until_closed(reader) == b""  # cut, nothing answered


async def test_connections_over_the_bound_are_refused_then_all_cut(parser: str) -> None:
    async with serving(parser) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)  # all accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await until_closed(reader)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused.lower()
        assert b"server.max_connections" in refused and b'"code": -32005' in refused
        for r, _ in held:  # silent: each is cut at its head's deadline
            assert (await until_closed(r)).startswith(b"HTTP/1.1 408 ")
        writer.close()


def test_the_daemon_picks_httptools_when_it_is_installed() -> None:
    base = protocol_class("httptools")
    assert issubclass(protocol_for(LIMITS), base)
    assert protocol_for(LIMITS).LIMITS is LIMITS  # type: ignore[attr-defined]
