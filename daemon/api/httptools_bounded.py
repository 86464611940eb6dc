"""uvicorn's httptools protocol with the daemon's connection limits (`connections.Bounded`).

httptools parses HTTP in C, where h11 parses it in Python: most of what a small request costs
the daemon, after its own work. This module imports httptools, so `connections.protocol_for`
imports it only to see whether httptools is installed, and uses the h11 protocol otherwise.

The parser says where a request is through its callbacks: a request's first byte
(`on_message_begin`) begins its head (on a new connection the head's deadline runs from the
connection on), the end of its head (`on_headers_complete`) begins its body, and the end of
its body (`on_message_complete`) ends it; between requests uvicorn's keep-alive timer runs.
The deadline is set once the bytes that arrived have been parsed, for where the request then
is: a request that arrives whole in one read, as most do, starts no timer at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from daemon.api.connections import Bounded, Phase

__all__ = ["BoundedHttpToolsProtocol"]


class BoundedHttpToolsProtocol(Bounded, HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines on a request's head and body, and a bound
    on the connections open at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_bounds()
        #: Where the request being parsed is; None between requests.
        self._parsing: Phase | None = "head"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.LIMITS.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        self._expect("head")  # from the connection on: a client that sends nothing is cut too

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # discarded: nothing of a refused connection is read
        super().data_received(data)
        if self._handed_over() or self._parsing is None:
            self._cancel()
        else:
            self._expect(self._parsing)  # runs on if already running for this phase

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

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # --- the parser's callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsing = "head"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._parsing = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._parsing = None
        self._cancel()  # a next request parsed in the same read gets a deadline of its own
