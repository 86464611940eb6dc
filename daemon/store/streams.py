"""The store's streams and step memo: a stream's row, and the finished steps of a task.

A step (a model call's parsed result, under a key such as `exec:<stream>:r<round>:a<attempt>`)
is what makes a finished call never run again after a restart: every role call looks here
first. A stream's output and its step are written in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.store import statements as sql
from daemon.store.events import NewEvent
from daemon.store.tables import StreamRow
from daemon.store.thread import StoreThread


class StreamQueries(StoreThread):
    """Reads and writes of the `streams` and `steps` tables."""

    async def upsert_stream(
        self,
        task_id: str,
        stream_id: str,
        *,
        step: tuple[str, Any] | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
        first: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> NewEvent | None:
        """Create or update a stream's row. With `step` (key, value) the step memo and with
        `event` (type, data) the event are written in the same transaction: a stream whose
        output is memoised is then never left looking unfinished after a crash. `first`: an
        event written just before `event`, in that transaction too (one write, not two).
        Returns `event` as written."""

        def work() -> tuple[NewEvent | None, NewEvent | None]:
            with self._tx() as conn:
                sql.update_stream(conn, task_id, stream_id, fields)
                if step is not None:
                    sql.put_step(conn, task_id, step[0], step[1])
                before = sql.insert_event(conn, task_id, *first) if first else None
                return before, (sql.insert_event(conn, task_id, *event) if event else None)

        _, written = await self._write(work, lambda evs: list(evs))
        return written

    async def add_streams(self, task_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Create the rows of new streams (each a mapping with `stream_id` and its columns),
        in one transaction."""

        def work() -> None:
            with self._tx() as conn:
                sql.insert_streams(conn, task_id, rows)

        await self._run(work)

    async def streams_of(self, task_id: str) -> list[StreamRow]:
        def work() -> list[StreamRow]:
            with self._tx() as conn:
                return sql.stream_rows(conn, task_id)

        return await self._run(work)

    async def get_step(self, task_id: str, key: str) -> Any | None:
        """The value memoised under `key`, or None if that step has not finished."""

        def work() -> Any | None:
            with self._tx() as conn:
                value_json = sql.get_step(conn, task_id, key)
            return None if value_json is None else json.loads(value_json)

        return await self._run(work)

    async def put_step(self, task_id: str, key: str, value: Any) -> None:
        def work() -> None:
            with self._tx() as conn:
                sql.put_step(conn, task_id, key, value)

        await self._run(work)
