"""Connections: a deadline on each request's head and body, and a bound on how many are open.

uvicorn's protocols time out an idle connection between requests (keep-alive) but not a
request that is still arriving: a client that sends one byte a second holds its connection,
and its buffers, for as long as it likes, and a few hundred such clients hold a few hundred
connections. `BoundedH11Protocol` and `BoundedHttpToolsProtocol` (`httptools_bounded`, used
when httptools is installed) are uvicorn's own protocols with two deadlines added (`Bounded`),
each started once and never pushed back by more bytes:

- the head (request line and headers) must be complete `header_timeout_s` after the
  connection opens, or after the first byte of the next request on a kept-alive connection;
  a client still sending it then is answered 408 and cut off;
- the body must be complete `body_timeout_s` after the head; a client still sending it then
  is cut off (the application sees the client go away).

A third deadline covers the other direction: a client that stops reading what it is sent
(an event stream, a large answer) fills the send buffers, and the connection would be held
for as long as the client lives, even once the application has given up on it (a close
waits for the buffers to drain). Writing that stays paused for `send_timeout_s`
(`server.stream_send_timeout_s`) drops the connection; a slow client that still reads resumes
the writing and is never dropped.

And a connection over `max_connections` open at once is answered 503 with Retry-After and
closed before any of its request is read, so a flood of connections cannot exhaust the
process's file descriptors or memory. The 503 goes out at once; the refused connection's
input is discarded for at most `REFUSED_LINGER_S` so the client can read the answer (closing
on unread input would reset the connection and lose it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from daemon.config.layers import Config
from daemon.service.errors import BUSY, INVALID_REQUEST

log = logging.getLogger("tierd.connections")

#: Seconds a refused connection is kept to discard its input while the client reads the 503.
REFUSED_LINGER_S = 1.0
#: Seconds a client refused for too many connections is told to wait.
REFUSED_RETRY_AFTER_S = 1

#: The range of every server.*_timeout_s key, and of server.max_connections.
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.1, 3600.0
MAX_CONNECTIONS = 1_000_000

Phase = Literal["head", "body"]


def _raw_reply(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, in tierd's error shape."""
    code = BUSY if status == 503 else INVALID_REQUEST
    body = json.dumps(
        {"error": {"code": code, "message": message, "data": {"status": status}}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request may take to arrive, and how many connections may be open."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    send_timeout_s: float = 30.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        # Checked here too: a zero deadline would cut every client, an unbounded one none.
        for name, key in (
            ("header_timeout_s", "header_timeout_s"),
            ("body_timeout_s", "body_timeout_s"),
            ("send_timeout_s", "stream_send_timeout_s"),
        ):
            value = getattr(self, name)
            if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
                raise ValueError(
                    f"server.{key} must be from {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S}, not {value:g}"
                )
        if not 1 <= self.max_connections <= MAX_CONNECTIONS:
            raise ValueError(
                f"server.max_connections must be from 1 to {MAX_CONNECTIONS}, "
                f"not {self.max_connections}"
            )

    @classmethod
    def from_config(cls, config: Config) -> ConnectionLimits:
        return cls(
            header_timeout_s=float(config.get("server.header_timeout_s")),
            body_timeout_s=float(config.get("server.body_timeout_s")),
            send_timeout_s=float(config.get("server.stream_send_timeout_s")),
            max_connections=int(config.get("server.max_connections")),
        )


class Bounded(asyncio.Protocol):
    """What both protocols add to uvicorn's: the 503 of a connection over the bound, the head
    and body deadlines, and dropping a client that stopped reading. A protocol class puts it
    first among its bases (so `super()` here is uvicorn's protocol) and says when a request's
    phases begin and end (`_expect`, `_cancel`) and whether a response is under way
    (`_responding`)."""

    LIMITS: ClassVar[ConnectionLimits] = ConnectionLimits()
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    #: uvicorn's open connections (its server state's set, shared by every protocol).
    connections: set[Any]

    def _init_bounds(self) -> None:
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None
        self._refused = False
        self._stalled: asyncio.TimerHandle | None = None

    def _responding(self) -> bool:
        raise NotImplementedError

    # --- the transport's callbacks, around uvicorn's ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.LIMITS.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._expect("head")  # from the connection on: a client that sends nothing is cut too

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._reading_again()
        if not self._refused:
            super().connection_lost(exc)

    def pause_writing(self) -> None:
        if self._refused:
            return
        super().pause_writing()
        self._writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._reading_again()

    # --- the connection bound ---------------------------------------------------------------

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        self._refused = True
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            _raw_reply(
                503,
                "Service Unavailable",
                f"too many open connections ({self.LIMITS.max_connections}, "
                "server.max_connections); retry later",
                f"retry-after: {REFUSED_RETRY_AFTER_S}\r\n",
            )
        )
        if transport.can_write_eof():
            transport.write_eof()
        self._deadline = self.loop.call_later(REFUSED_LINGER_S, transport.abort)

    # --- a client that stopped reading ------------------------------------------------------

    def _writing_paused(self) -> None:
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.LIMITS.send_timeout_s, self._drop_stalled)

    def _reading_again(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _drop_stalled(self) -> None:
        self._stalled = None
        log.info("dropped a client that stopped reading for %g s", self.LIMITS.send_timeout_s)
        # An abort, not a close: a close would wait for the buffers to drain, which is what
        # the client does not let happen. The application sees the client go away.
        self.transport.abort()

    # --- the deadlines ----------------------------------------------------------------------

    def _handed_over(self) -> bool:
        """Closed, or handed to another protocol (an upgrade): no deadline of ours applies."""
        me: Any = self  # a protocol, as every class that mixes this in is
        return self.transport.is_closing() or self.transport.get_protocol() is not me

    def _expect(self, phase: Phase) -> None:
        if self._phase == phase:
            return  # started when the phase began: more bytes do not push it back
        self._cancel()
        limit = self.LIMITS.header_timeout_s if phase == "head" else self.LIMITS.body_timeout_s
        self._phase = phase
        self._deadline = self.loop.call_later(limit, self._expired, phase)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._phase = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        self._phase = None
        if self.transport.is_closing():
            return
        log.info("cut off a client that did not send a request %s in time", phase)
        if phase == "head" and not self._responding():
            limit = self.LIMITS.header_timeout_s
            self.transport.write(
                _raw_reply(
                    408,
                    "Request Timeout",
                    f"the request's head did not arrive within {limit:g} s "
                    "(server.header_timeout_s)",
                )
            )
        self.transport.close()


class BoundedH11Protocol(Bounded, H11Protocol):
    """uvicorn's h11 protocol with deadlines on a request's head and body, and a bound on
    the connections open at once. `protocol_for` makes one with the configured limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_bounds()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # discarded: nothing of a refused connection is read
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _responding(self) -> bool:
        return self.conn.our_state is not h11.IDLE

    def _follow(self) -> None:
        """Start or stop the deadline for where the request now is."""
        if self._handed_over():
            self._cancel()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._expect("body")
        elif state is h11.IDLE and (self._phase == "head" or self.conn.trailing_data[0]):
            # Part of the next head has arrived (or none yet on a new connection).
            self._expect("head")
        else:
            # The request is in (or the connection is done): no deadline, or, between
            # requests, uvicorn's keep-alive timer.
            self._cancel()


def protocol_for(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class uvicorn should build each connection with, under `limits`: the
    httptools one when httptools is installed (it parses in C), else the h11 one."""
    base: type[Bounded]
    try:
        from daemon.api.httptools_bounded import BoundedHttpToolsProtocol
    except ImportError:  # httptools is not installed
        base = BoundedH11Protocol
    else:
        base = BoundedHttpToolsProtocol

    class Configured(base):  # type: ignore[valid-type, misc]
        LIMITS = limits

    return cast("type[asyncio.Protocol]", Configured)
