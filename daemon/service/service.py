"""The service layer: every action a client can take, independent of how it arrived.

JSON-RPC, REST and any later adapter call these methods and only translate. The service
validates, persists and hands work to the runner; it never waits for a task's work. `Service`
is the one face the adapters see; each group of actions is a unit of its own:

- `submission`: task/submit (limits, idempotency, the task's configuration), with
  `code_repo` for a code task's repository;
- `task_views`: task/get, task/list, and finding a task by id, unique prefix or `@last`;
- `interventions`: task/cancel, task/answer, task/approve;
- `deletion`: task/delete (an ended task and all tierd keeps of it);
- `configuration`: config/get, config/set;
- `status`: daemon/status.

Every method takes its params model (`params`) and returns its result model (`results`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence

from daemon.config.layers import Config, ConfigError, reload_if_changed
from daemon.home.paths import Homes
from daemon.service.admission import ActiveTasks
from daemon.service.code_result import result_diff
from daemon.service.configuration import Configuration
from daemon.service.deletion import Deleted, Deletion
from daemon.service.detached import Detached
from daemon.service.errors import NotConfigured
from daemon.service.interventions import Interventions
from daemon.service.params import (
    AnswerParams,
    ApproveParams,
    ConfigGetParams,
    ConfigSetParams,
    ListParams,
    SubmitParams,
    TaskIdParams,
)
from daemon.service.ports import Engine
from daemon.service.results import (
    Answered,
    Canceled,
    ConfigDocument,
    ConfigEntry,
    DaemonStatus,
    Decided,
    Submitted,
    TaskDetail,
    TaskDiff,
    TaskPage,
    TaskSummary,
)
from daemon.service.status import StatusReport
from daemon.service.submission import Submission
from daemon.service.task_views import TaskViews, find_task
from daemon.store.store import Store

__all__ = ["Engine", "Service"]


class Service:
    """Every action a client can take, each delegated to the unit that owns it."""

    def __init__(
        self,
        store: Store,
        homes: Homes,
        config: Config,
        engine: Engine,
        env: Mapping[str, str] | None = None,
        started_at: float | None = None,
    ) -> None:
        self.store = store
        self.homes = homes
        self.engine = engine
        self.configuration = Configuration(config, homes, engine)
        # One count of unfinished tasks, shared by admission and status.
        active = ActiveTasks(store)
        detached = Detached()
        self.submission = Submission(
            store,
            engine,
            self.configuration,
            active,
            detached,
            os.environ if env is None else env,
            homes,
        )
        self.views = TaskViews(store)
        self.interventions = Interventions(
            store, engine, detached, patches=homes.data_dir / "patches"
        )
        self.deletion = Deletion(store, engine, self.submission.attachments, detached, homes)
        self.status_report = StatusReport(
            store,
            engine,
            self.configuration,
            active,
            time.time() if started_at is None else started_at,
        )

    @property
    def config(self) -> Config:
        """The configuration in effect now (config/set replaces it)."""
        return self.configuration.current

    async def _reread_config(self) -> None:
        """Take in hand edits of the global file; a broken file refuses new tasks, naming its
        path and line, rather than being ignored while tasks run on what it said before."""
        try:
            self.configuration.current = await asyncio.to_thread(
                reload_if_changed, self.configuration.current
            )
        except ConfigError as exc:
            raise NotConfigured(
                f"the configuration file is broken: {exc}; fix it, then submit again",
                {"field": "config", "path": exc.path, "line": exc.line, "key": exc.key},
            ) from exc

    # --- tasks -----------------------------------------------------------------------------

    async def resolve_task_id(self, task_id: str) -> str:
        """The full id of the task `task_id` names (an id, a unique prefix, or `@last`)."""
        return (await find_task(self.store, task_id)).id

    async def submit(self, params: SubmitParams) -> Submitted:
        await self._reread_config()
        return await self.submission.submit(params)

    async def get(self, params: TaskIdParams) -> TaskDetail:
        return await self.views.get(params)

    async def list(self, params: ListParams) -> TaskPage:
        return await self.views.list(params)

    async def changed(
        self,
        states: Sequence[str] | None,
        limit: int,
        page_token: str | None = None,
        changed_since: float | None = None,
    ) -> tuple[Sequence[TaskSummary], str | None]:
        """Tasks whose state changed last first, a page at a time (A2A's ListTasks order)."""
        return await self.views.changed(states, limit, page_token, changed_since)

    async def count_changed(self, states: Sequence[str] | None, changed_since: float | None) -> int:
        return await self.views.count_changed(states, changed_since)

    async def cancel(self, params: TaskIdParams) -> Canceled:
        return await self.interventions.cancel(params)

    async def answer(self, params: AnswerParams) -> Answered:
        return await self.interventions.answer(params)

    async def approve(self, params: ApproveParams) -> Decided:
        return await self.interventions.approve(params)

    async def delete(self, params: TaskIdParams) -> Deleted:
        """An ended task and all tierd keeps of it, gone (-32002 / 409 while it is live)."""
        return await self.deletion.delete(params)

    async def diff(self, params: TaskIdParams) -> TaskDiff:
        """A code task's merged result against its base (-32002 / 409 before it is merged)."""
        return await result_diff(await find_task(self.store, params.task_id))

    # --- daemon and config -----------------------------------------------------------------

    async def status(self) -> DaemonStatus:
        return await self.status_report.status()

    async def config_get(self, params: ConfigGetParams) -> ConfigDocument | ConfigEntry:
        return await self.configuration.get(params)

    async def config_set(self, params: ConfigSetParams) -> ConfigEntry:
        return await self.configuration.set(params)
