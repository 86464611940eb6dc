"""The store's streams and step memo: a stream's row, and the finished steps of a task.

A step (a model call's parsed result, under a key such as `exec:<stream>:r<round>:a<attempt>`)
is what makes a finished call never run again after a restart: every role call looks here
first. A stream's output and its step are written in one transaction.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlmodel import Session, col, select

from daemon.store.events import NewEvent, add_event, as_new_or_none
from daemon.store.tables import StepRow, StreamRow
from daemon.store.thread import StoreThread


def _merge_step(s: Session, task_id: str, key: str, value: Any) -> None:
    s.merge(StepRow(task_id=task_id, key=key, value_json=json.dumps(value), created_at=time.time()))


class StreamQueries(StoreThread):
    """Reads and writes of the `streams` and `steps` tables."""

    async def upsert_stream(
        self,
        task_id: str,
        stream_id: str,
        *,
        step: tuple[str, Any] | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> NewEvent | None:
        """Create or update a stream's row. With `step` (key, value) the step memo and with
        `event` (type, data) the event are written in the same transaction: a stream whose
        output is memoised is then never left looking unfinished after a crash."""

        def work() -> NewEvent | None:
            with self._session() as s:
                row = s.exec(
                    select(StreamRow).where(
                        StreamRow.task_id == task_id, StreamRow.stream_id == stream_id
                    )
                ).first()
                if row is None:
                    row = StreamRow(task_id=task_id, stream_id=stream_id)
                for k, v in fields.items():
                    setattr(row, k, v)
                s.add(row)
                if step is not None:
                    _merge_step(s, task_id, step[0], step[1])
                ev = add_event(s, task_id, *event) if event else None
                s.commit()
                return as_new_or_none(ev)

        return await self._write(work, lambda ev: [ev])

    async def streams_of(self, task_id: str) -> list[StreamRow]:
        def work() -> list[StreamRow]:
            with self._session() as s:
                q = select(StreamRow).where(StreamRow.task_id == task_id)
                return list(s.exec(q.order_by(col(StreamRow.id))))

        return await self._run(work)

    async def get_step(self, task_id: str, key: str) -> Any | None:
        """The value memoised under `key`, or None if that step has not finished."""

        def work() -> Any | None:
            with self._session() as s:
                row = s.get(StepRow, (task_id, key))
                return None if row is None else json.loads(row.value_json)

        return await self._run(work)

    async def put_step(self, task_id: str, key: str, value: Any) -> None:
        def work() -> None:
            with self._session() as s:
                _merge_step(s, task_id, key, value)
                s.commit()

        await self._run(work)
