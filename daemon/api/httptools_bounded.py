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

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # discarded: nothing of a refused connection is read
        super().data_received(data)
        if self._handed_over() or self._parsing is None:
            self._cancel()
        else:
            self._expect(self._parsing)  # runs on if already running for this phase

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
