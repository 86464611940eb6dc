"""Answers that only read the store, kept as JSON until the store next writes: task/get's
(and task/list's) results, built once and served again.

A client that polls a task (an editor plugin, the dashboard, a script waiting for the end)
asks for the same view again and again, and each build reads three tables and writes
kilobytes of JSON. The answer is kept here, written as JSON, under the store's write mark
(`daemon.store.write_mark`): any row the database changes moves the mark, and an answer kept
under another mark is never served; a task/get after a change, however soon, reads the
change. Only answers whose build saw no write are kept, so a kept answer is also one
consistent picture of the task. A store without a mark (PostgreSQL) has nothing kept.

The key is the method and its params as the client gave them (a task id, a unique prefix,
`@last`): what they name can only change with a write too. Errors (no such task, an
ambiguous prefix) are not kept. Clients asking for one answer while it is being built share
that build, unless the store wrote after it began. Kept answers are bounded in total size.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.store.write_mark import write_mark

__all__ = ["MAX_CACHED_BYTES", "DetailCache", "NotJson", "json_bytes"]

#: What `write_mark` gives: equal while the store has not written, None without a mark.
Mark = tuple[int, int] | None
#: The most bytes of answers kept at once (the oldest go first); a bigger answer is not kept.
MAX_CACHED_BYTES = 16 << 20


class NotJson(Exception):
    """The result cannot be written as JSON (a NaN kept in a stored report, say)."""


def json_bytes(value: Any) -> bytes:
    """`value` as the API writes JSON: UTF-8, compact, no NaN or Infinity. ValueError,
    TypeError or RecursionError when it cannot be."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


class DetailCache:
    """Answers (JSON bytes) by key, valid while the store's write mark stays the same."""

    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self._max_bytes = max_bytes
        #: The write mark the kept answers were built under.
        self._mark: Mark = None
        self._kept: dict[str, bytes] = {}
        self._size = 0
        #: Builds under way: the write mark each began under, and its task.
        self._building: dict[str, tuple[Mark, asyncio.Task[bytes]]] = {}

    def kept(self, key: str) -> bytes | None:
        """The answer kept for `key` if the store has not written since; None if it must be
        built (`get`)."""
        mark = write_mark()
        return self._kept.get(key) if mark is not None and mark == self._mark else None

    async def get(self, key: str, build: Callable[[], Awaitable[Any]]) -> bytes:
        """The answer for `key` as JSON, kept or made by `build` (a JSON-ready value); the
        build's errors as raised, NotJson when its value cannot be written as JSON."""
        now = write_mark()
        if now is None:  # nothing can be kept: build for this client alone
            return await self._fill(key, now, build)
        if now == self._mark:
            kept = self._kept.get(key)
            if kept is not None:
                return kept
        else:
            self._forget(now)  # every kept answer is older than the last write
        building = self._building.get(key)
        if building is None or building[0] != now:
            # The build's reads are queued after every write the mark `now` counts, on the
            # store's one thread: it sees them all.
            task = asyncio.create_task(self._fill(key, now, build))
            task.add_done_callback(_retrieve)
            building = (now, task)
            self._building[key] = building
        # Shielded: a client that goes away does not cancel the build the others wait for.
        return await asyncio.shield(building[1])

    def _forget(self, now: Mark) -> None:
        self._kept.clear()
        self._size = 0
        self._mark = now

    async def _fill(self, key: str, began: Mark, build: Callable[[], Awaitable[Any]]) -> bytes:
        try:
            value = await build()
            try:
                data = json_bytes(value)
            except (TypeError, ValueError, RecursionError) as exc:
                raise NotJson(f"the result could not be written as JSON: {exc}") from exc
        finally:
            if self._building.get(key, (None, None))[1] is asyncio.current_task():
                del self._building[key]
        if began is not None and write_mark() == began:  # nothing was written meanwhile
            self._keep(key, data, began)
        return data

    def _keep(self, key: str, data: bytes, mark: Mark) -> None:
        if mark != self._mark:
            self._forget(mark)
        if len(data) > self._max_bytes:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._size -= len(old)
        while self._kept and self._size + len(data) > self._max_bytes:
            self._size -= len(self._kept.pop(next(iter(self._kept))))
        self._kept[key] = data
        self._size += len(data)


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Marks a build's error as seen when every client waiting for it has gone away."""
    if not task.cancelled():
        task.exception()
