"""Half-sent requests and floods of connections against a real daemon, over raw sockets.

A client that opens a connection and sends nothing, trickles a request's head a byte at a
time, or trickles its body, is cut off once `server.header_timeout_s` (head) or
`server.body_timeout_s` (body) have passed, however steadily it sends, while a normal client
is served all along. Connections over `server.max_connections` are answered 503 with
Retry-After at once, and the daemon serves again once the idle ones are cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support.daemon import DaemonProcess, write_config

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 4.0
MAX_CONNECTIONS = 64
#: How late a cut may come on a loaded machine (two cores shared with other test runs).
SLACK_S = 2.5


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("home")
    write_config(
        home,
        None,
        f"[server]\nheader_timeout_s = {HEADER_TIMEOUT_S}\nbody_timeout_s = {BODY_TIMEOUT_S}\n"
        f"max_connections = {MAX_CONNECTIONS}\n",
    )
    d = DaemonProcess(home, logs=home).start()
    try:
        yield d
    finally:
        d.stop()
    log = (home / "daemon.err").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


def address(d: DaemonProcess) -> tuple[str, int]:
    parts = urlsplit(d.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def until_cut(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """What the daemon sent before it closed the connection (TimeoutError if it never did)."""
    got = b""
    async with asyncio.timeout(within_s):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                return got
            if not chunk:
                return got
            got += chunk


async def trickler(d: DaemonProcess, kind: str) -> dict[str, Any]:
    """One hostile client: "silent" sends nothing, "head" trickles a head that never ends,
    "body" sends a whole head and trickles the body. How long until it was cut, and what
    the daemon answered."""
    host, port = address(d)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    if kind == "head":
        first = f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nX-Padding: ".encode()
    elif kind == "body":
        first = (
            f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {d.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
    else:
        first = b""

    async def feed() -> None:
        writer.write(first)
        while kind != "silent":
            await asyncio.sleep(0.05)
            writer.write(b"a")  # steady: more bytes must not push the deadline back
            await writer.drain()

    feeding = asyncio.create_task(feed())
    try:
        answer = await until_cut(reader, HEADER_TIMEOUT_S + BODY_TIMEOUT_S + 4 * SLACK_S)
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        writer.transport.abort()
    return {"kind": kind, "after_s": time.monotonic() - started, "answer": answer}


async def normal_client(d: DaemonProcess, stop: asyncio.Event) -> list[float]:
    """A well-behaved client: daemon/status over one kept-alive connection, timed."""
    latencies = []
    async with httpx.AsyncClient(
        base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=30
    ) as h:
        while not stop.is_set():
            started = time.monotonic()
            r = await h.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "daemon/status"})
            assert r.status_code == 200 and "result" in r.json(), r.text
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return latencies


async def trickle_attack(d: DaemonProcess) -> tuple[list[dict[str, Any]], list[float]]:
    stop = asyncio.Event()
    normal = asyncio.create_task(normal_client(d, stop))
    kinds = ["head"] * 24 + ["body"] * 16 + ["silent"] * 10
    cut = await asyncio.gather(*(trickler(d, k) for k in kinds))
    stop.set()
    return list(cut), await normal


def test_half_sent_requests_are_cut_while_others_are_served(daemon: DaemonProcess) -> None:
    cut, latencies = asyncio.run(trickle_attack(daemon))
    for c in cut:
        limit = HEADER_TIMEOUT_S if c["kind"] in ("head", "silent") else BODY_TIMEOUT_S
        # Cut at its deadline: not before (the timer, not something else), not long after.
        assert limit - 0.3 <= c["after_s"] <= limit + SLACK_S, c
        if c["kind"] != "body":  # nothing of the request was read yet: it is told why
            assert c["answer"].startswith(b"HTTP/1.1 408 "), c
            assert b"server.header_timeout_s" in c["answer"], c
            assert b'"code": -32600' in c["answer"] and b'"status": 408' in c["answer"], c
    # The normal client was served all along: a request held behind the hostile clients would
    # wait at least until they were cut, a whole header deadline. (How fast it is served on a
    # machine shared with other test runs is the bench's business, not this test's.)
    assert len(latencies) >= 10 and max(latencies) < HEADER_TIMEOUT_S - 0.5, latencies
    assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies


async def flood(d: DaemonProcess, extra: int) -> tuple[list[bytes], float]:
    host, port = address(d)
    held = [await asyncio.open_connection(host, port) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.5)  # every one accepted and counted by the daemon
    started = time.monotonic()
    over = [await asyncio.open_connection(host, port) for _ in range(extra)]
    answers = await asyncio.gather(*(until_cut(r, SLACK_S) for r, _ in over))
    refused_in = time.monotonic() - started
    # The idle connections that fill the bound are cut at their header deadline, without
    # their clients doing anything.
    await asyncio.gather(*(until_cut(r, HEADER_TIMEOUT_S + SLACK_S) for r, _ in held))
    for _, w in held + over:
        w.transport.abort()
    return list(answers), refused_in


def test_connections_over_the_bound_are_refused_at_once(daemon: DaemonProcess) -> None:
    answers, refused_in = asyncio.run(flood(daemon, extra=16))
    assert refused_in < SLACK_S
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: 1" in answer.lower() and b"server.max_connections" in answer
        # The API's one error shape: BUSY, as a full submit queue answers.
        assert b'"code": -32005' in answer and b'"status": 503' in answer, answer
    # Once the idle ones are cut, new clients are served again.
    with daemon.http() as h:
        assert h.get("/v1/status").status_code == 200


@pytest.mark.parametrize(
    ("key", "value"),
    [("header_timeout_s", 0), ("body_timeout_s", -1.0), ("stream_send_timeout_s", 1e9)],
)
def test_a_deadline_out_of_range_stops_the_start(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: float
) -> None:
    """A zero deadline would cut every client and a huge one none: a configuration error."""
    home = tmp_path_factory.mktemp("home")
    write_config(home, None, f"[server]\n{key} = {value}\n")
    proc = DaemonProcess(home).spawn()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"server.{key}" in err and "configuration error" in err, err
