"""The task's usage log: every model-call attempt as a `usage` row and a `model.call` event.

The model layer's `UsageRecord` is the one record of a call; the store's `usage` table holds
the same fields under the same names, so a record is converted by name, never field by field
(the store does not know the model layer, and must not).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields

from daemon.store.errors import StoreFull
from daemon.store.store import Store, UsageRow
from roles.models.costs import price_known
from roles.models.usage import UsageRecord

log = logging.getLogger("tierd.models")

__all__ = ["EVENT_FIELDS", "UsageRecorder", "records_of", "to_record", "to_row"]

#: What a `model.call` event tells of a record (clients read these names).
EVENT_FIELDS = (
    "role",
    "purpose",
    "stream_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_s",
    "outcome",
)
_RECORD_FIELDS = frozenset(f.name for f in fields(UsageRecord))


def to_row(record: UsageRecord) -> UsageRow:
    """The `usage` row of a record: every field the table has a column for.

    An unknown cost (None) is stored as 0.0 (the column is NOT NULL in every store written
    so far); `to_record` reads it back as unknown, from the model's missing price.
    """
    row = UsageRow(**{k: v for k, v in asdict(record).items() if k in UsageRow.model_fields})
    if row.cost_usd is None:
        row.cost_usd = 0.0
    return row


def to_record(row: UsageRow) -> UsageRecord:
    """A stored row as a record again (fields the table does not keep get their defaults)."""
    record = UsageRecord(**{k: v for k, v in row.model_dump().items() if k in _RECORD_FIELDS})
    used = record.prompt_tokens > 0 or record.completion_tokens > 0
    # Tokens used at no recorded cost: free by the price table, or not priced at all.
    if not record.cost_usd and used and not price_known(record.model):
        record.cost_usd = None
    return record


async def records_of(store: Store, task_id: str) -> list[UsageRecord]:
    """Every recorded attempt of the task's model calls, in the order they were recorded."""
    return [to_record(row) for row in await store.usage_of(task_id)]


class UsageRecorder:
    """An `on_record` for one task: each attempt's row and its event, in one transaction."""

    def __init__(self, store: Store, task_id: str) -> None:
        self.store = store
        self.task_id = task_id

    async def __call__(self, record: UsageRecord) -> None:
        row = to_row(record)
        row.task_id = self.task_id
        data = {name: getattr(record, name) for name in EVENT_FIELDS}
        data["latency_s"] = round(record.latency_s, 4)
        try:
            await self.store.record_usage(row, event=("model.call", data))
        except StoreFull as exc:
            # An expected condition, not a bug: one line, no traceback. The answer itself is
            # kept by the gateway and saved once there is room; only this accounting row of
            # the call is lost.
            log.warning(
                "task %s: usage of a %s/%s call not recorded: %s",
                self.task_id,
                record.role,
                record.purpose,
                exc,
            )
