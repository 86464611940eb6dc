"""The life of a task as a LangGraph program: definition only; `runner.py` decides when it runs.

The program is a LangGraph functional-API `entrypoint` with a SQLite checkpointer (or, on a
PostgreSQL store, LangGraph's PostgreSQL one: `checkpoints_pg`) in durable ("sync") mode, and
every model call is a LangGraph `task` (see `gateway`). What the program does for a task is
`task_run.TaskRun`; the names here (the entrypoint `tierd_task`, one thread per task id) are
in every checkpoint written, so they stay as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from langgraph.func import entrypoint

from daemon.engine.checkpoints import Checkpoints, open_checkpoints
from daemon.engine.code.hygiene import cleanup_task, reconcile
from daemon.engine.code_hosting import CodeHosting
from daemon.engine.disk_full import store_full
from daemon.engine.ending import fail_task, finalize
from daemon.engine.errors import CheckpointsDamaged
from daemon.engine.gateway import ModelsFactory, Slots
from daemon.engine.human import HumanSignals
from daemon.engine.new_threads import NewThreads, NewThreadsSqliteSaver
from daemon.engine.notify import Notifier
from daemon.engine.settings import TaskSettings
from daemon.engine.task_run import Collaborators, TaskRun
from daemon.store.states import TaskState
from daemon.store.store import Store
from roles.model_caller import ModelCaller
from roles.models.routing import check_tiers

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
        code: CodeHosting | None = None,
    ) -> None:
        self.store = store
        self.parts = Collaborators(
            store, slots, signals, notifier, models, code=code or CodeHosting()
        )
        self._close: Callable[[], Awaitable[None]] | None = None
        self._graph: Any = None
        self._saver: NewThreads | None = None

    async def open(self, checkpoints: Checkpoints) -> None:
        """Open the checkpointer (`checkpoints` None: in memory; a URL: the PostgreSQL store's
        database) and compile the program.

        Raises CheckpointsDamaged when the checkpoint file cannot be used.
        """
        saver: Any
        if isinstance(checkpoints, str):
            from daemon.engine.checkpoints_pg import open_pg_saver

            saver, self._close = await open_pg_saver(checkpoints)
        else:
            saver = await self._open_sqlite(checkpoints)
        self._saver = saver if isinstance(saver, NewThreads) else None
        parts = self.parts

        @entrypoint(checkpointer=saver)
        async def tierd_task(task_id: str) -> dict[str, Any]:
            return await TaskRun(parts, task_id).drive()

        self._graph = tierd_task

    async def _open_sqlite(self, checkpoints: Path | None) -> NewThreadsSqliteSaver:
        conn = await open_checkpoints(checkpoints)
        self._close = conn.close
        saver = NewThreadsSqliteSaver(conn)
        try:
            await saver.setup()
        except sqlite3.DatabaseError as exc:
            await self.close()
            if store_full(exc) is not None or checkpoints is None:
                raise
            raise CheckpointsDamaged(str(checkpoints), str(exc)) from exc
        return saver

    async def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await close()

    async def run(self, task_id: str, *, new: bool = False) -> None:
        """Run the task's program (`new`: a task just created, with no checkpoint yet)."""
        config = {"configurable": {"thread_id": task_id}}
        # A run cut short by a crash has pending work in its checkpoint: continue that run.
        # Otherwise start one; the step memo makes both paths skip finished calls. A new task
        # has no checkpoint: reading it (here, and LangGraph's own read as the run begins)
        # would be round trips on its way to the first call.
        state = None if new else await self._graph.aget_state(config)
        payload = None if state is not None and state.next else task_id
        saver = self._saver if new else None
        if saver is not None:
            saver.expect_new(task_id)
        try:
            await self._graph.ainvoke(payload, config, durability="sync")
        finally:
            if saver is not None:
                saver.forget_new(task_id)

    def check_models(self, stored: Mapping[str, Any]) -> list[str]:
        """Check each role's model in task settings `stored` (flat keys, as `settings_json`)
        before any call: raises ModelConfigError naming the role and model (a tier set up
        wrongly, a model litellm cannot route); returns warnings (an unknown price)."""
        return check_tiers(TaskSettings.from_stored(stored).tiers())

    async def cleanup_code(self, task_id: str) -> None:
        """An ended code task's worktrees and spare branches go (see `code.hygiene`)."""
        if self.parts.code.worktrees is not None:
            await cleanup_task(self.store, self.parts.code.worktrees, task_id)

    async def reconcile_code(self) -> None:
        """At start: remove the worktrees and branches no code task needs any longer."""
        if self.parts.code.worktrees is not None:
            await reconcile(self.store, self.parts.code.worktrees)

    def forget(self, task_id: str) -> None:
        """The runner is done with the task for now: drop what is held in memory for it."""
        self.parts.held.forget(task_id)

    async def finalize(self, task_id: str, state: TaskState, reason: str) -> bool:
        """End a task as failed or canceled, keeping what was done in a partial report; False
        if it had reached a final state already (it stays as it is)."""
        return await finalize(self.store, task_id, state, reason)
