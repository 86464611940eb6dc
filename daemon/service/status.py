"""`daemon/status`: what the daemon is, how long it has run, and how loaded it is."""

from __future__ import annotations

import os
import time

from daemon import __version__
from daemon.service.admission import ActiveTasks
from daemon.service.configuration import Configuration
from daemon.service.diagnostics import process_snapshot
from daemon.service.ports import Engine
from daemon.service.results import (
    ConcurrencyView,
    DaemonStatus,
    ExecutorsView,
    Limits,
    ModelPrice,
)
from daemon.service.task_config import ROLES
from daemon.store.states import TaskState
from daemon.store.store import Store, redact_url


class StatusReport:
    """Version, pid, uptime, store, task counts, the agent limit and the process's own use."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        configuration: Configuration,
        active: ActiveTasks,
        started_at: float,
    ) -> None:
        self._store = store
        self._engine = engine
        self._configuration = configuration
        self._active = active
        self._started_at = started_at

    async def status(self) -> DaemonStatus:
        counts = await self._store.counts_by_state()
        return DaemonStatus(
            version=__version__,
            pid=os.getpid(),
            uptime_s=round(time.time() - self._started_at, 3),
            store=redact_url(self._store.url),
            tasks={s: counts.get(s.value, 0) for s in TaskState},
            concurrency=ConcurrencyView.model_validate(self._engine.concurrency()),
            limits=Limits(
                active_tasks=await self._active.count(),
                max_active_tasks=self._configuration.current.get("limits.max_active_tasks"),
            ),
            process=process_snapshot(),
            models=self._models(),
            executors=ExecutorsView.model_validate(await self._engine.executors()),
        )

    def _models(self) -> dict[str, ModelPrice] | None:
        config = self._configuration.current
        models = {role: str(config.get(f"models.{role}.model") or "") for role in ROLES}
        prices = self._engine.model_prices(models)
        if prices is None:
            return None
        out = {}
        for role, model in models.items():
            known = prices[role]
            out[role] = ModelPrice(
                model=model,
                input_usd_per_mtok=known[0] if known else None,
                output_usd_per_mtok=known[1] if known else None,
            )
        return out
