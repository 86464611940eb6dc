"""`AttachmentKeeper`: the service's one handle on attachments, from a submit to their removal.

A submit decodes and types them (`decode`), compares them with a task its idempotency key
already names (`same_as_stored`), reads them (`read`), and keeps them while its task is
created (`keeping`): the folder is written, the task and the rows are stored by the caller,
and the folder is removed again if that fails. Every blocking step runs on a worker thread.

The folder writes and the sweep of what a crash left behind hold one lock: a sweep never
sees a folder whose task is being stored at that moment. The sweep runs once, before the
first attachments this daemon keeps (the daemon's start has no hook in the service).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config.layers import Config
from daemon.service.attachments import files
from daemon.service.attachments.prepare import (
    AttachmentLimits,
    Decoded,
    Prepared,
    decode_attachments,
    read_attachments,
)
from daemon.service.attachments.reader import needs_child, read_in_child
from daemon.service.params import AttachmentParams
from daemon.store.store import AttachmentRow, Store

__all__ = ["AttachmentKeeper", "Kept"]

log = logging.getLogger("tierd.tasks")


@dataclass
class Kept:
    """The rows of a task's attachments being created; `discard()` removes the folder on
    leaving (the task was not created after all)."""

    rows: list[AttachmentRow] = field(default_factory=list)
    discarded: bool = False

    def discard(self) -> None:
        self.discarded = True


class AttachmentKeeper:
    def __init__(self, store: Store, data_dir: Path) -> None:
        self._store = store
        self._data_dir = data_dir
        self._lock = asyncio.Lock()
        self._swept = False

    async def decode(self, items: Sequence[AttachmentParams], config: Config) -> list[Decoded]:
        """The attachments decoded and typed (InvalidParams naming a refused one)."""
        if not items:
            return []
        limits = AttachmentLimits.from_config(config)
        return await asyncio.to_thread(decode_attachments, items, limits)

    async def read(self, decoded: Sequence[Decoded], config: Config) -> list[Prepared]:
        """What the models get of each (InvalidParams naming one that cannot be read)."""
        if not decoded:
            return []
        limits = AttachmentLimits.from_config(config)
        if needs_child(decoded):
            # Parsed by third-party code from an untrusted file: in a child that can be killed.
            timeout_s = float(config.get("attachments.read_timeout_s"))
            return await read_in_child(decoded, limits, timeout_s)
        return await asyncio.to_thread(read_attachments, decoded, limits)

    async def same_as_stored(self, task_id: str, decoded: Sequence[Decoded]) -> bool:
        """Whether `decoded` are the task's attachments: names, types and bytes, in order."""
        stored = await self._store.attachments_of(task_id)
        return [(a.name, a.media_type, a.sha256) for a in stored] == [
            (d.name, d.media_type, d.sha256) for d in decoded
        ]

    @asynccontextmanager
    async def keeping(self, task_id: str, prepared: Sequence[Prepared]) -> AsyncIterator[Kept]:
        """The task's folder written, its rows for the caller to store with the task; the
        folder removed again when the block fails or discards it."""
        kept = Kept()
        if not prepared:
            yield kept
            return
        async with self._lock:
            if not self._swept:
                await self._sweep()
            kept.rows = await asyncio.to_thread(
                files.write_task_files, self._data_dir, task_id, prepared
            )
            try:
                yield kept
            except BaseException:
                await asyncio.to_thread(files.remove_task_files, self._data_dir, task_id)
                raise
            if kept.discarded:
                await asyncio.to_thread(files.remove_task_files, self._data_dir, task_id)

    async def _sweep(self) -> None:
        """Remove the folders of tasks the store does not have (a crash between writing a
        folder and storing its task)."""
        names = await asyncio.to_thread(files.folders, self._data_dir)
        known = await self._store.known_task_ids(names) if names else set()
        removed = await asyncio.to_thread(files.sweep, self._data_dir, names, known)
        if removed:
            log.info("removed %d attachment folder(s) of tasks never stored", len(removed))
        self._swept = True

    async def remove(self, task_id: str) -> bool:
        """Remove the task's attachments, files and rows (with the task's data); whether it
        had any."""
        async with self._lock:
            had_files = await asyncio.to_thread(files.remove_task_files, self._data_dir, task_id)
            had_rows = await self._store.delete_attachments(task_id)
        return had_files or had_rows > 0
