"""Every model call has a hard deadline: 1.5 x timeout_s + 1 s, whatever the HTTP client does.

Two servers that take the request and never finish the answer, on raw sockets:

- a silent one (reads the request, sends nothing): the HTTP client's own read timeout ends
  the call, at timeout_s, so it ends no earlier than that and well within the deadline;
- a trickling one (sends a 200 head, then one byte of a chunked body every fifth of
  timeout_s, for ever): every read gets data in time, so the client's timeout never fires
  and only the hard deadline ends the call. Without it the call would never end.

Measured against the configured timeout, with max_retries 0 and no fallbacks: one attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from roles.models.gateway import ModelCallError, ModelTier, UsageRecord, call_model

TIMEOUT_S = 1.0
DEADLINE_S = 1.5 * TIMEOUT_S + 1
#: Scheduling slack on a busy machine (two cores shared by several test runs).
MARGIN_S = 1.0
MESSAGES = [{"role": "user", "content": "Do the thing."}]


def read_request(conn: socket.socket) -> None:
    """Read one HTTP request (head and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def answering(conn: socket.socket, stop: threading.Event) -> None:
    """A complete, tiny chat completion: to warm the client up before anything is timed."""
    read_request(conn)
    body = (
        b'{"id":"c1","object":"chat.completion","created":1,"model":"gpt-5-mini",'
        b'"choices":[{"index":0,"finish_reason":"stop",'
        b'"message":{"role":"assistant","content":"ok"}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    )
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def silent(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    stop.wait()


def trickling(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    while not stop.wait(TIMEOUT_S / 5):
        try:
            conn.sendall(b"1\r\n \r\n")  # a chunk of one space: JSON whitespace, never done
        except OSError:
            return  # the client gave up and closed the connection


@contextlib.contextmanager
def raw_server(
    handle: Callable[[socket.socket, threading.Event], None],
) -> Iterator[tuple[str, threading.Event]]:
    """A loopback server answering each connection with `handle`; yields its /v1 URL and an
    event set once a handler has returned (for the trickler: the client closed on it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    closed = threading.Event()

    listener.settimeout(0.1)  # a closed listener does not wake a blocked accept()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            handle(conn, stop)
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", closed
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def tier(api_base: str, timeout_s: float = TIMEOUT_S) -> ModelTier:
    return ModelTier(
        model="openai/gpt-5-mini", api_base=api_base, timeout_s=timeout_s, max_retries=0
    )


@pytest.fixture(autouse=True)
async def warm() -> None:
    """One answered call first: the client's first call sets itself up (sessions, lazy
    imports) on the event loop, which would be timed as part of the attempt. Its own
    deadline is long: on a loaded machine that set-up alone can take seconds."""
    with raw_server(answering) as (api_base, _):
        await call_model(
            tier(api_base, timeout_s=60), MESSAGES, role="executor", purpose="execute", task_id="w"
        )


async def one_attempt(api_base: str) -> tuple[float, str]:
    """The attempt's own duration (its record's latency) and the error, bounded by the test
    itself: without the deadline the trickling call would never end."""
    records: list[UsageRecord] = []
    with pytest.raises(ModelCallError) as failed:
        async with asyncio.timeout(DEADLINE_S + 20):
            await call_model(
                tier(api_base),
                MESSAGES,
                role="executor",
                purpose="execute",
                task_id="t",
                on_record=records.append,
            )
    (record,) = records
    return record.latency_s, str(failed.value)


async def test_a_server_that_never_answers_is_cut_by_the_clients_timeout() -> None:
    with raw_server(silent) as (api_base, _):
        elapsed, error = await one_attempt(api_base)
    assert TIMEOUT_S <= elapsed <= DEADLINE_S + MARGIN_S, elapsed
    assert "(1 attempt)" in error and "Timeout" in error


async def test_a_server_that_trickles_for_ever_is_cut_at_the_hard_deadline() -> None:
    with raw_server(trickling) as (api_base, closed):
        elapsed, error = await one_attempt(api_base)
        was_closed = await asyncio.to_thread(closed.wait, 5)
    # Not before the deadline (the client's own timeout never fired: data kept coming)...
    assert DEADLINE_S - 0.05 <= elapsed <= DEADLINE_S + MARGIN_S, elapsed
    assert "no complete answer within the guard time" in error
    # ...and the request was closed, so the server stops sending.
    assert was_closed, "the trickling connection was never closed"
