"""The life of a task as a LangGraph program: definition only; `runner.py` decides when it runs.

The program is a LangGraph functional-API `entrypoint` with a SQLite checkpointer in durable
("sync") mode, and every model call is a LangGraph `task` (see `gateway`). What the program
does for a task is `task_run.TaskRun`; the names here (the entrypoint `tierd_task`, one thread
per task id) are in every checkpoint written, so they stay as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.func import entrypoint

from daemon.engine.ending import fail_task, finalize
from daemon.engine.gateway import ModelsFactory, Slots
from daemon.engine.human import HumanSignals
from daemon.engine.notify import Notifier
from daemon.engine.task_run import Collaborators, TaskRun
from daemon.store.states import TaskState
from daemon.store.store import Store
from roles.model_caller import ModelCaller

__all__ = ["Workflow", "fail_task"]


class Workflow:
    """Holds the compiled LangGraph program and its checkpointer."""

    def __init__(
        self,
        store: Store,
        slots: Slots,
        *,
        signals: HumanSignals,
        notifier: Notifier | None = None,
        models: ModelsFactory = ModelCaller,
    ) -> None:
        self.store = store
        self.parts = Collaborators(store, slots, signals, notifier, models)
        self._conn: aiosqlite.Connection | None = None
        self._graph: Any = None

    async def open(self, checkpoints: Path | None) -> None:
        """Open the checkpointer (`checkpoints` None: in memory) and compile the program."""
        self._conn = await aiosqlite.connect(str(checkpoints) if checkpoints else ":memory:")
        saver = AsyncSqliteSaver(self._conn)
        await saver.setup()
        parts = self.parts

        @entrypoint(checkpointer=saver)
        async def tierd_task(task_id: str) -> dict[str, Any]:
            return await TaskRun(parts, task_id).drive()

        self._graph = tierd_task

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def run(self, task_id: str) -> None:
        config = {"configurable": {"thread_id": task_id}}
        state = await self._graph.aget_state(config)
        # A run cut short by a crash has pending work in its checkpoint: continue that run.
        # Otherwise start one; the step memo makes both paths skip finished calls.
        payload = None if state.next else task_id
        await self._graph.ainvoke(payload, config, durability="sync")

    async def finalize(self, task_id: str, state: TaskState, reason: str) -> None:
        """End a task as failed or canceled, keeping what was done in a partial report."""
        await finalize(self.store, task_id, state, reason)
