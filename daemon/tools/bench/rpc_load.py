"""A load generator for one JSON-RPC call: many clients, each on its own kept-alive HTTP/1.1
connection, sending the same request again as soon as its answer is in.

Written on asyncio's streams, not httpx: httpx spends about a millisecond of CPU per request
in the bench process, which also runs the model simulator, so at 2,000 requests a second the
bench measured its own client more than the daemon. This one sends pre-built request bytes
and reads each answer by its Content-Length, about a tenth of that. Every answer is checked:
a 200 whose body is the first answer's bytes (the call's result does not change while it is
measured), or else one whose JSON passes `check` all the same; the first answer is parsed
and checked in full.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadResult", "rpc_load"]


@dataclass
class LoadResult:
    """What the clients saw, from the moment they were all let go."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    response_bytes: int = 0

    def failed(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why


class _Client:
    """One connection sending `request` and reading the answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ValueError(f"an answer without Content-Length: {head[:200]!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _request(url: str, token: str, method: str, params: dict[str, Any]) -> bytes:
    parts = urlsplit(url)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _why_not(status: int, body: bytes, check: Callable[[Any], bool]) -> str | None:
    """Why this answer is not a right one, or None."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    if not isinstance(doc, dict) or "result" not in doc or doc.get("id") != 1:
        return f"not a result: {body[:200]!r}"
    return None if check(doc["result"]) else f"a result that fails the check: {body[:200]!r}"


async def rpc_load(
    url: str,
    token: str,
    method: str,
    params: dict[str, Any],
    *,
    clients: int,
    requests_per_client: int,
    check: Callable[[Any], bool],
) -> LoadResult:
    """`clients` connections, each sending `requests_per_client` calls one after another,
    all let go at once once every one has connected and had a first answer."""
    request = _request(url, token, method, params)
    parts = urlsplit(url)
    out = LoadResult()
    go, all_in = asyncio.Event(), asyncio.Event()
    reference: list[bytes] = []
    ready = 0

    def arrived() -> None:
        """One more client connected and answered once (or failed to)."""
        nonlocal ready
        ready += 1
        if ready == clients:
            all_in.set()

    async def one_client() -> None:
        client = None
        warmed = False
        try:
            client = _Client(*await asyncio.open_connection(parts.hostname, parts.port))
            status, body = await client.call(request)  # connected, and a first answer
            why = _why_not(status, body, check)
            if why is not None:
                out.failed(why)
                return
            reference.append(body)
            warmed = True
            arrived()
            await go.wait()
            for _ in range(requests_per_client):
                started = time.perf_counter()
                status, body = await client.call(request)
                out.latencies.append(time.perf_counter() - started)
                if status != 200 or body != reference[0]:
                    why = _why_not(status, body, check)
                    if why is not None:
                        out.failed(why)
                out.response_bytes = len(body)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            out.failed(f"{type(exc).__name__}: {exc}")
        finally:
            if not warmed:
                arrived()
            if client is not None:
                client.close()

    running = [asyncio.create_task(one_client()) for _ in range(clients)]
    await all_in.wait()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*running)
    out.elapsed_s = time.perf_counter() - started
    return out
