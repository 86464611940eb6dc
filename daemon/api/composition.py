"""The composition root: the daemon's long-lived parts, built, wired and started in order.

`Daemon` owns the store, the event feed, the governor, the runner and the service. It is the
one place that knows every part; each part knows only what it is handed (the service sees
the runner through its `Engine` protocol, the runner sees the governor and the store).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from daemon.config.layers import Config
from daemon.engine.runner import Runner
from daemon.governor.governor import ConcurrencySettings, Governor
from daemon.home.paths import Homes
from daemon.service.service import Service
from daemon.store.feed import EventFeed
from daemon.store.store import Store


def store_url(homes: Homes, config: Config) -> str:
    """The store's URL: store.url, or the SQLite database in the data directory."""
    return config.get("store.url") or f"sqlite:///{homes.database}"


@dataclass
class Daemon:
    homes: Homes
    config: Config
    store: Store = field(init=False)
    feed: EventFeed = field(init=False)
    governor: Governor = field(init=False)
    runner: Runner = field(init=False)
    service: Service = field(init=False)
    started: bool = False
    _pending: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = Store(store_url(self.homes, self.config))
        self.feed = EventFeed(self.store)
        self.governor = Governor(
            ConcurrencySettings.from_config(self.config.get("concurrency")),
            on_change=self._on_governor_change,
        )
        self.runner = Runner(
            self.store,
            self.governor,
            checkpoints=self.homes.checkpoints,
            worktrees=self.homes.worktrees,
            private_dirs=self.homes.private_dirs,
        )
        self.service = Service(self.store, self.homes, self.config, self.runner)

    def _on_governor_change(self, change: dict[str, Any]) -> None:
        # Called from the governor's loop; the event write must not block it. The task is
        # kept until done so it is not garbage-collected mid-write.
        task = asyncio.get_running_loop().create_task(
            self.store.append_event(None, "governor.limit", change)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        await self.store.open()
        await self.feed.start()
        await self.governor.start()
        self.runner.preload()
        await self.runner.resume_all()

    def begin_shutdown(self) -> None:
        """First step of a stop: let long-lived responses (SSE) end so the server can close."""
        self.feed.close()

    async def stop(self) -> None:
        self.feed.close()
        await self.runner.stop()
        await self.governor.stop()
        # Closing the store waits for queued writes: nothing in flight is lost.
        await self.store.close()
