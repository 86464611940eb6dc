"""`task/submit`: check a new task, admit it under the limits, store it and start it.

A submit answers at once with the task's id; the work runs in the engine. A submit with an
idempotency key is safe to retry: the key names one task, across retries, restarts and
processes sharing the database. A submit with `repo` is a code task: its repository is checked
here and its facts stored with it (`code_repo`). A submit's attachments are checked and read
before anything is stored, and kept in the task's folder as the task is created
(`attachments`): a refused submit leaves nothing behind, neither a row nor a file.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from daemon.config.layers import Config
from daemon.home.paths import Homes
from daemon.service.admission import ActiveTasks, KeyLocks
from daemon.service.attachments.keeper import AttachmentKeeper
from daemon.service.attachments.prepare import Decoded, Prepared
from daemon.service.code_repo import code_facts, same_code
from daemon.service.configuration import Configuration
from daemon.service.detached import Detached
from daemon.service.errors import Busy, InvalidParams
from daemon.service.params import SubmitParams
from daemon.service.ports import Engine
from daemon.service.results import Submitted
from daemon.service.task_config import (
    check_models,
    check_routing,
    effective_config,
    task_settings,
)
from daemon.store.states import TaskState
from daemon.store.store import Store, TaskRow

#: Seconds a client refused a new task is told to wait: tasks take seconds to minutes, so
#: retrying sooner would only add load.
SUBMIT_RETRY_AFTER_S = 5.0


def new_task_id() -> str:
    # Time-ordered ids: listing by id is listing by submission, and ids make stable cursors.
    return f"t{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def _check_text(params: SubmitParams, config: Config) -> None:
    """Refuse a goal or context over the configured sizes, or a blank goal."""
    for name, text in (("goal", params.goal), ("context", params.context)):
        most = config.get(f"limits.max_{name}_chars")
        if len(text) > most:
            raise InvalidParams(
                f"{name}: too long ({len(text)} characters, at most {most})", {"field": name}
            )
    if not params.goal.strip():
        raise InvalidParams("goal: must not be blank", {"field": "goal"})


def _duplicate(row: TaskRow, params: SubmitParams, same_attachments: bool) -> Submitted:
    """The answer to a submit whose idempotency key already names `row`."""
    same = (
        row.goal == params.goal
        and row.context == params.context
        and row.options_json == params.options.model_dump_json(exclude_none=True)
        and same_code(row, params)
        and same_attachments
    )
    if not same:
        raise InvalidParams(
            f"idempotency_key: already used for another request (task {row.id}, with a "
            "different goal, context, options, repo, base, include_uncommitted or "
            "attachments); use a new key for a new task",
            {"field": "idempotency_key", "task_id": row.id},
        )
    return Submitted(task_id=row.id, state=TaskState(row.state), duplicate=True)


class Submission:
    """Admits, stores and starts new tasks."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        configuration: Configuration,
        active: ActiveTasks,
        detached: Detached,
        env: Mapping[str, str],
        homes: Homes,
    ) -> None:
        self._store = store
        self._homes = homes
        self._engine = engine
        self._configuration = configuration
        self._active = active
        self._detached = detached
        self._env = env
        # Submits admitted but not yet stored: they count against the limit too.
        self._admitting = 0
        self._key_locks = KeyLocks()
        #: The tasks' attachments: checked and read at submit, kept in each task's folder.
        self.attachments = AttachmentKeeper(store, homes.data_dir)

    async def submit(self, params: SubmitParams) -> Submitted:
        config = self._configuration.current
        _check_text(params, config)
        # Decoded and typed first (cheap), read only for a new task (see _submit_new).
        decoded = await self.attachments.decode(params.attachments, config)
        key = params.idempotency_key
        if key is None:
            return await self._submit_new(params, decoded)
        # One submit per key at a time in this daemon: a concurrent retry waits for the first
        # and then finds its task, instead of racing it through admission.
        async with self._key_locks.hold(key):
            existing = await self._store.task_by_key(key)
            if existing is not None:
                # Before admission: a retry of a task already counted is not a new task.
                same = await self.attachments.same_as_stored(existing.id, decoded)
                return _duplicate(existing, params, same)
            return await self._submit_new(params, decoded)

    async def _admit(self) -> None:
        """Refuse a task when limits.max_active_tasks are already unfinished."""
        limit = int(self._configuration.current.get("limits.max_active_tasks"))
        # Submits between this check and their task.state event count too, or a burst of
        # concurrent submits would all pass it.
        active = await self._active.count() + self._admitting
        if active >= limit:
            raise Busy(
                f"too many unfinished tasks ({limit}, limits.max_active_tasks); "
                "retry when some have finished",
                retry_after_s=SUBMIT_RETRY_AFTER_S,
                data={"limit": limit},
            )

    async def _submit_new(self, params: SubmitParams, decoded: list[Decoded]) -> Submitted:
        # A code task's repository first: it is the task's project (its .tierd.toml applies),
        # and checking it takes git a moment, which must not sit between admission and the
        # count below; so does reading the attachments (a PDF's pages, a workbook's cells).
        code = await code_facts(params, self._homes)
        prepared = await self.attachments.read(decoded, self._configuration.current)
        await self._admit()
        project = code["repo"] if code is not None else None
        config = effective_config(self._configuration.current, params.options, project)
        check_models(config, self._env)
        await check_routing(self._engine, task_settings(config), wait=False)
        self._admitting += 1
        creating = asyncio.ensure_future(self._create(params, config, code, prepared))
        # Counted until the creation itself ends, not the request: a client that goes away
        # leaves the creation running, and it must still count against the limit.
        creating.add_done_callback(self._admitted)
        # Detached: a client that goes away mid-submit must not leave its task stored but
        # never started (its retry would find the task and start nothing).
        return await self._detached.run(creating)

    def _admitted(self, _creation: asyncio.Future[Any]) -> None:
        self._admitting -= 1

    async def _create(
        self,
        params: SubmitParams,
        config: Config,
        code: dict[str, Any] | None,
        prepared: list[Prepared],
    ) -> Submitted:
        now = time.time()
        row = TaskRow(
            id=new_task_id(),
            state=TaskState.queued,
            goal=params.goal,
            context=params.context,
            options_json=params.options.model_dump_json(exclude_none=True),
            created_at=now,
            updated_at=now,
            settings_json=json.dumps(task_settings(config)),
            idempotency_key=params.idempotency_key,
            code_json=None if code is None else json.dumps(code),
        )
        # The attachments' folder is written, then the task and their rows are stored in one
        # transaction; a task not created removes the folder again.
        async with self.attachments.keeping(row.id, prepared) as kept:
            if row.idempotency_key is None:
                await self._store.create_task(row, kept.rows)
            else:
                stored, created = await self._store.create_task_once(row, kept.rows)
                if not created:  # another process sharing the database took the key first
                    kept.discard()
                    decoded = [p.decoded for p in prepared]
                    same = await self.attachments.same_as_stored(stored.id, decoded)
                    return _duplicate(stored, params, same)
        self._engine.start(row.id, new=True)
        return Submitted(task_id=row.id, state=TaskState.queued)
