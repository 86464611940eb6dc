"""A LangGraph checkpointer told which threads are new, so a new task's run skips one read.

LangGraph begins every run by reading the thread's latest checkpoint. A task just created
(its id is new, drawn at random) has none: that read is a round trip to the database on the
way from a submit to the task's first model call, and it can only answer "none". The runner
says which thread is new (`expect_new`) just before its first run; that run's first read of
the latest checkpoint is answered here, and every later read goes to the database.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["NewThreads", "NewThreadsSqliteSaver"]


class NewThreads(BaseCheckpointSaver[Any]):
    """Mixin for an async checkpointer: the first read of a new thread's latest checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._new: set[str] = set()

    def expect_new(self, thread_id: str) -> None:
        """`thread_id` has no checkpoint: its next read of the latest one answers none."""
        self._new.add(thread_id)

    def forget_new(self, thread_id: str) -> None:
        """The run of `thread_id` is over: whatever it wrote is read from the database."""
        self._new.discard(thread_id)

    async def aget_tuple(self, config: Any) -> CheckpointTuple | None:
        conf = config.get("configurable", {})
        thread = conf.get("thread_id")
        latest = not conf.get("checkpoint_id") and not conf.get("checkpoint_ns")
        if latest and thread in self._new:
            self._new.discard(thread)
            return None
        return await super().aget_tuple(config)


class NewThreadsSqliteSaver(NewThreads, AsyncSqliteSaver):
    """LangGraph's SQLite checkpointer, told which threads are new."""
