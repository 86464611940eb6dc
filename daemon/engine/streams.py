"""The streams of one running task: their state in memory (`StreamState`) and in the store.

A stream's row, its `stream.state` event and, once it is done, the memo of its output are
written in one transaction (`StreamBook.update`): a kill never separates them. The in-memory
status is what the scheduler and the human waits decide on; it is never stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from daemon.store.store import Store
from roles.plan.schema import StreamSpec

__all__ = ["STREAM_FINAL", "StreamBook", "StreamState"]

#: Stream states that are final; a canceled task marks its other streams canceled.
STREAM_FINAL = frozenset({"accepted", "fixed", "failed", "canceled"})


@dataclass
class StreamState:
    spec: StreamSpec
    depth: int
    parent: str | None
    # pending | working | waiting (for a human) | split (its sub-streams work) | done | failed
    status: str = "pending"
    #: The id of the question a waiting stream waits on.
    question: str | None = None
    # A sub-stream of a split also sees what its parent was given.
    inherited: dict[str, str] = field(default_factory=dict)
    #: When its work first began (in this run or an earlier one), once it has.
    started_at: float | None = None
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class StreamBook:
    """Every stream of one task run, top-level and sub-streams, by id."""

    def __init__(self, store: Store, task_id: str, executor_model: str) -> None:
        self.store = store
        self.task_id = task_id
        #: Named in each `running` event: the model that works on the stream.
        self.executor_model = executor_model
        self.streams: dict[str, StreamState] = {}

    def __getitem__(self, stream_id: str) -> StreamState:
        return self.streams[stream_id]

    async def update(
        self,
        st: StreamState,
        state: str,
        *,
        step: tuple[str, Any] | None = None,
        first: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> None:
        """Save the stream's row and its `stream.state` event (and `step`, the memo of its
        finished output; `first`, an event that comes before) in one transaction: a kill
        never separates them."""
        data = {"stream_id": st.spec.id, "state": state, "parent": st.parent}
        data.update({k: v for k, v in fields.items() if k in {"verdict", "reason", "rounds"}})
        if state == "running":
            data["model"] = self.executor_model
        await self.store.upsert_stream(
            self.task_id,
            st.spec.id,
            step=step,
            event=("stream.state", data),
            first=first,
            state=state,
            **fields,
        )

    async def register(self, specs: list[StreamSpec], depth: int, parent: str | None) -> None:
        """Know these streams; those not stored yet get their `pending` rows, in one write."""
        existing = {s.stream_id: s for s in await self.store.streams_of(self.task_id)}
        new_rows = []
        for spec in specs:
            stored = existing.get(spec.id)
            started = stored.started_at if stored is not None else None
            self.streams[spec.id] = StreamState(spec, depth, parent, started_at=started)
            if stored is None:
                new_rows.append(
                    {
                        "stream_id": spec.id,
                        "title": spec.title,
                        "parent_id": parent,
                        "depth": depth,
                        "spec_json": spec.model_dump_json(),
                        "state": "pending",
                    }
                )
        if new_rows:
            await self.store.add_streams(self.task_id, new_rows)

    async def saved(self) -> dict[str, Any]:
        """The stored rows of the task's streams, by stream id."""
        return {s.stream_id: s for s in await self.store.streams_of(self.task_id)}
