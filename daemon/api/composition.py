"""The composition root: the daemon's long-lived parts, built, wired and started in order.

`Daemon` owns the store, the event feed, the governor, the runner and the service. It is the
one place that knows every part; each part knows only what it is handed (the service sees
the runner through its `Engine` protocol, the runner sees the governor and the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from daemon.config.layers import Config
from daemon.engine.checkpoints import checkpoints_for
from daemon.engine.code_hosting import CodeHosting
from daemon.engine.runner import Runner
from daemon.governor.governor import ConcurrencySettings, Governor
from daemon.home.paths import Homes
from daemon.service.service import Service
from daemon.store.database import shared_store
from daemon.store.feed import EventFeed
from daemon.store.store import Lease, Store

#: How often a daemon sharing its store looks for the events the others wrote.
FOLLOW_OTHERS_S = 0.25


def store_url(homes: Homes, config: Config) -> str:
    """The store's URL: store.url, or the SQLite database in the data directory."""
    return config.get("store.url") or f"sqlite:///{homes.database}"


def daemon_name(homes: Homes) -> str:
    """This daemon's name in task leases: the host and an id kept in its home, so that the
    daemon started again on one home reclaims its own tasks at once."""
    path = homes.data_dir / "daemon-id"
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        name = ""
    if not name:
        name = uuid.uuid4().hex[:12]
        path.write_text(name + "\n")
    return f"{socket.gethostname()}/{name}"


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
    #: Reading what other daemons sharing the store write (None: a store of this one's own).
    _following: asyncio.Task[None] | None = None
    #: The Ray driver (`[executors] backend = "ray"`), else None.
    _ray: Any = None

    def __post_init__(self) -> None:
        url = store_url(self.homes, self.config)
        lease = Lease(daemon_name(self.homes), float(self.config.get("store.lease_s")))
        self.store = Store(url, lease=lease)
        self.feed = EventFeed(self.store)
        self.governor = Governor(
            ConcurrencySettings.from_config(self.config.get("concurrency")),
            on_change=self._on_governor_change,
        )
        self.runner = Runner(
            self.store,
            self.governor,
            checkpoints=checkpoints_for(url, self.homes.checkpoints),
            code=CodeHosting(self.homes.worktrees, self.homes.private_dirs, self._sites()),
        )
        self.service = Service(self.store, self.homes, self.config, self.runner)

    def _sites(self) -> Any:
        """Where code streams work: None (this machine) unless `[executors] backend = "ray"`."""
        if self.config.get("executors.backend") != "ray":
            return None
        if importlib.util.find_spec("ray") is None:
            raise ValueError(
                '[executors] backend = "ray" needs Ray, which is not installed: '
                "pip install 'tierd[ray]' (here and on every node of the cluster)"
            )
        from daemon.engine.code.ray.bridge import RayBridge
        from daemon.engine.code.ray.settings import RaySettings
        from daemon.engine.code.ray.sites import RaySites

        settings = RaySettings.from_config(self.config.get)
        keys = [
            str(self.config.get(f"models.{role}.api_key_env") or "")
            for role in ("orchestrator", "planner", "executor")
        ]
        self._ray = RayBridge(settings, self.homes.state_dir / "ray-driver.log", key_names=keys)
        return RaySites(self._ray, self.homes.worktrees)

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
        if shared_store(self.store.url):
            self._following = asyncio.create_task(self.store.follow_others(FOLLOW_OTHERS_S))
        await self.governor.start()
        self.runner.preload()
        await self.runner.resume_all()

    def begin_shutdown(self) -> None:
        """First step of a stop: let long-lived responses (SSE) end so the server can close."""
        self.feed.close()

    async def stop(self) -> None:
        self.feed.close()
        if self._following is not None:  # first: no other daemon's event reaches a stopping run
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        await self.runner.stop()
        if self._ray is not None:  # after the runs: their sites are released
            await self._ray.stop()
        await self.governor.stop()
        # Closing the store waits for queued writes: nothing in flight is lost.
        await self.store.close()
