"""The bench's task/get load: its HTTP client (`rpc_load`) against a small loopback server, and
the target it is judged by.

The client must count every request it sent, keep one connection per client, and count an
answer as an error unless it is a 200 whose result passes the check (a result for the task
asked about), whether or not it is the same bytes as the first answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from daemon.tools.bench.report import evaluate_targets
from daemon.tools.bench.rpc_load import rpc_load

TARGET = "task/get >= 2,000 req/s at 50 clients, p99 <= 50 ms"


@asynccontextmanager
async def server(answer: Callable[[int], tuple[int, bytes]]) -> AsyncIterator[dict[str, Any]]:
    """An HTTP/1.1 server on loopback answering request number n (from 0) with
    `answer(n)`; yields its URL and what it saw."""
    seen: dict[str, Any] = {"requests": 0, "connections": 0, "bodies": set()}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                seen["bodies"].add(await reader.readexactly(length))
                assert b"authorization: bearer tok" in head.lower()
                status, body = answer(seen["requests"])
                seen["requests"] += 1
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
                )
        except asyncio.IncompleteReadError:
            pass  # the client closed its connection
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        seen["url"] = f"http://127.0.0.1:{port}"
        yield seen


def result(task_id: str, extra: str = "") -> bytes:
    doc = {"jsonrpc": "2.0", "result": {"id": task_id, "state": "completed", "x": extra}, "id": 1}
    return json.dumps(doc).encode()


def is_t1(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("id") == "t1"


async def test_every_request_is_sent_timed_and_checked() -> None:
    async with server(lambda n: (200, result("t1"))) as seen:
        load = await rpc_load(
            seen["url"], "tok", "task/get", {"task_id": "t1"},
            clients=5, requests_per_client=7, check=is_t1,
        )  # fmt: skip
    assert load.errors == 0 and load.first_error is None
    assert len(load.latencies) == 35 and all(lat > 0 for lat in load.latencies)
    assert seen["requests"] == 5 + 35  # a first answer per client, then the load
    assert seen["connections"] == 5  # each client keeps its connection
    (body,) = seen["bodies"]
    assert json.loads(body) == {
        "jsonrpc": "2.0", "id": 1, "method": "task/get", "params": {"task_id": "t1"},
    }  # fmt: skip
    assert load.response_bytes == len(result("t1")) and load.elapsed_s > 0


async def test_wrong_answers_are_errors_and_changed_right_ones_are_not() -> None:
    def answer(n: int) -> tuple[int, bytes]:
        if n == 10:
            return 200, result("t2")  # another task's
        if n == 11:
            return 401, b'{"error": {"code": -32004}}'
        if n == 12:
            return 200, b'{"jsonrpc": "2.0", "error": {"code": -32001}, "id": 1}'
        if n == 13:
            return 200, b"not json"
        return 200, result("t1", extra="changed" if n > 13 else "")  # right, other bytes

    async with server(answer) as seen:
        load = await rpc_load(
            seen["url"], "tok", "task/get", {"task_id": "t1"},
            clients=2, requests_per_client=10, check=is_t1,
        )  # fmt: skip
    assert load.errors == 4, load.first_error
    assert len(load.latencies) == 20


async def test_a_client_refused_at_the_start_is_an_error() -> None:
    async with server(lambda n: (401, b"{}")) as seen:
        load = await rpc_load(
            seen["url"], "tok", "task/get", {"task_id": "t1"},
            clients=3, requests_per_client=4, check=is_t1,
        )  # fmt: skip
    assert load.errors == 3 and load.latencies == []
    assert load.first_error is not None and "HTTP 401" in load.first_error


def test_the_task_get_target() -> None:
    def met(**figures: Any) -> bool | None:
        get = {"clients": 50, "requests_per_s": 2500.0, "p50_ms": 18.0, "p99_ms": 31.0}
        report = {"workloads": [], "api": {"task_get": {**get, "errors": 0, **figures}}}
        (row,) = [t for t in evaluate_targets(report) if t["target"] == TARGET]
        return row["met"]

    assert met() is True
    assert met(requests_per_s=1999.0) is False
    assert met(p99_ms=50.5) is False
    assert met(errors=1) is False
    assert met(clients=10) is False
    assert not [t for t in evaluate_targets({"workloads": []}) if t["target"] == TARGET]
