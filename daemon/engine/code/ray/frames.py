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

__all__ = ["encode", "read_frame", "write_frame"]

_HEADER = struct.Struct("!Q")
#: Frames above this size are pickled and unpickled in a thread: a repository's bundle may be
#: hundreds of MB, and the daemon's event loop must not stop for it.
OFF_LOOP_BYTES = 1 << 20


def encode(message: Any) -> bytes:
    """One message as a frame (header and pickle)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; raises `asyncio.IncompleteReadError` at the end of the pipe."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    data = await reader.readexactly(size)
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(pickle.loads, data)
    return pickle.loads(data)


async def write_frame(writer: asyncio.StreamWriter, message: Any, *, big: bool = False) -> None:
    """Send one message (`big`: it may hold a bundle, pickled in a thread) and drain."""
    frame = await asyncio.to_thread(encode, message) if big else encode(message)
    writer.write(frame)
    await writer.drain()
