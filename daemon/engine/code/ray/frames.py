"""The daemon <-> Ray driver pipe: length-prefixed pickled messages.

Both ends are tierd's own processes (the driver is the daemon's child, on a pipe nobody else
holds), so pickle carries the requests' dataclasses and the replies' results as they are.
A request is `(id, op, args)`; a reply is `(id, ok, value)`, where a failed one's value is
`(kind, message)`: kind "lost" (the stream's actor or node is gone) or "error".
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

__all__ = ["read_frame", "write_frame"]

_HEADER = struct.Struct("!Q")


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; raises `asyncio.IncompleteReadError` at the end of the pipe."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def write_frame(writer: asyncio.StreamWriter | asyncio.WriteTransport, message: Any) -> None:
    """Queue one message (the caller drains)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)
