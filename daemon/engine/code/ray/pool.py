"""Idle stream workers kept per node, so that a stream starts without starting a process.

Ray gives each actor a worker process of its own, and starting one (Python, Ray, tierd's code
modules) takes a second or more on a busy node: paid by every stream and again after every
review round (a stream's worker rests while it waits), it was most of a stream's overhead on
the cluster. A worker is not tied to its stream (it removes the worktree on `close`), so the
driver keeps closed workers per node and hands them to the next stream placed there, and warms
a few on each node when it connects.

Workers hold no CPUs in Ray (`num_cpus=0`): an idle one must not keep Ray from scheduling, and
the placement (`placement.py`) already counts what each node runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

__all__ = ["WorkerPool", "kill_worker"]

log = logging.getLogger("tierd.ray.pool")

#: Idle workers kept on one node at most (the rest are ended when they close).
MAX_IDLE_PER_NODE = 4
#: Workers started on each node when the driver connects.
WARM_PER_NODE = 2


def kill_worker(actor: Any) -> None:
    """End a worker now (one that is dead already is fine)."""
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:  # already dead
        log.debug("kill: %s", exc)


class WorkerPool:
    """Idle workers by node id."""

    def __init__(self, remote_worker: Any, workdir: str) -> None:
        self.remote_worker = remote_worker
        self.workdir = workdir
        self.idle: defaultdict[str, list[Any]] = defaultdict(list)
        self._warming: set[asyncio.Task[None]] = set()

    def new(self, node: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return self.remote_worker.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            max_restarts=0,
            max_task_retries=0,
        ).remote(self.workdir)

    def take(self, node: str) -> Any:
        """An idle worker on `node`, else a new one."""
        idle = self.idle.get(node)
        return idle.pop() if idle else self.new(node)

    def give_back(self, node: str, actor: Any) -> bool:
        """Keep a closed worker for the next stream on `node`; False: the pool is full."""
        if len(self.idle[node]) >= MAX_IDLE_PER_NODE:
            return False
        self.idle[node].append(actor)
        return True

    def forget(self, node: str) -> list[Any]:
        """The node's idle workers, no longer kept (it died)."""
        return self.idle.pop(node, [])

    def warm(self, nodes: list[str]) -> None:
        """Start `WARM_PER_NODE` workers on each node in the background."""
        for node in nodes:
            for _ in range(WARM_PER_NODE - len(self.idle[node])):
                task = asyncio.create_task(self._warm_one(node))
                self._warming.add(task)
                task.add_done_callback(self._warming.discard)

    async def _warm_one(self, node: str) -> None:
        actor = self.new(node)
        try:
            await actor.ready.remote()
        except Exception as exc:  # a node going away: nothing to keep
            log.info("could not warm a worker on node %s: %s", node[:12], exc)
            return
        if not self.give_back(node, actor):
            kill_worker(actor)
