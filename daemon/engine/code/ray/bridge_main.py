"""The daemon's Ray driver, in a process of its own (`-m daemon.engine.code.ray.bridge_main`).

Why not in the daemon: a Ray driver ends its process about a minute after it loses the cluster's
head, starts threads that make forking unsafe, and costs seconds and ~150 MB of imports. The
daemon must outlive a cluster that goes away and keep its own start fast, so it starts this
module as a child and talks to it over a pipe (`frames`). Nothing but frames may reach the
pipe: fd 1 is pointed at stderr (the daemon's log of this process) before Ray loads, and the
frames go to a private copy of the original fd 1.

The driver holds one actor per stream (`worker.StreamWorker`), placed by `placement`. A call
whose actor or node is gone replies "lost" (the daemon opens the stream again elsewhere from
its last saved step); an error raised inside a call replies "error" with its message. The
driver ends when its stdin closes; its actors, owned by it, end with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from daemon.engine.code.ray.frames import read_frame, write_frame
from daemon.engine.code.ray.placement import Placement
from daemon.engine.code.ray.pool import WorkerPool, kill_worker

__all__ = ["DriverSettings", "main"]

log = logging.getLogger("tierd.ray.driver")

#: How long a stream waits between looks for a node with room.
ROOM_POLL_S = 0.5
#: How long a worker may take to start and make its worktree.
OPEN_TIMEOUT_S = 300.0
#: Nodes tried for one open before the stream is told it is lost.
OPEN_TRIES = 3
#: How long a worker may take to remove its worktree before it is killed anyway.
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DriverSettings:
    """The driver's settings (its only argument, as JSON)."""

    address: str
    workdir: str
    stream_cpus: float
    stream_memory: int
    soft: float


def _lost_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions as e

    return (e.RayActorError, e.NodeDiedError, e.ObjectLostError, e.WorkerCrashedError)


class Driver:
    """Streams' actors on the cluster, by stream key."""

    def __init__(self, settings: DriverSettings) -> None:
        import ray

        from daemon.engine.code.ray.worker import StreamWorker

        self.settings = settings
        self.placement = Placement(settings.stream_cpus, settings.stream_memory, settings.soft)
        self.pool = WorkerPool(ray.remote(StreamWorker), settings.workdir)
        self.actors: dict[str, tuple[Any, str]] = {}
        #: Each stream's call in flight (one at a time), to cancel it.
        self.calls: dict[str, Any] = {}
        #: Opens under way (waiting for room or for a worker), to cancel on a close.
        self.opening: dict[str, asyncio.Task[Any]] = {}
        self.lost = _lost_errors()
        self.lost_or_late: tuple[type[BaseException], ...] = (*self.lost, TimeoutError)

    async def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "ping":
            nodes = await self.placement.nodes()
            self.pool.warm([n.node_id for n in nodes if n.room > 0])
            return "pong"
        if op == "nodes":
            return [n.as_dict() for n in await self.placement.nodes()]
        if op == "open":
            return await self.open(*args)
        if op == "call":
            return await self.call(*args)
        if op == "close":
            return await self.close(*args)
        if op == "cancel":
            return self.cancel(*args)
        raise ValueError(f"unknown request {op!r}")

    async def open(self, key: str, spec: Any, bundle: bytes) -> Any:
        import ray

        await self.close(key)
        task = asyncio.current_task()
        assert task is not None
        self.opening[key] = task
        try:
            return await self._open(key, spec, ray.put(bundle))
        finally:
            if self.opening.get(key) is task:
                del self.opening[key]

    async def _open(self, key: str, spec: Any, data: Any) -> Any:
        avoid: set[str] = set()
        waited = False
        while True:
            node = await self.placement.choose(frozenset(avoid))
            if node is None:
                await self._no_room(avoid)
                if not waited:
                    log.info("stream %s waits for a node with room", key)
                    waited = True
                await asyncio.sleep(ROOM_POLL_S)
                continue
            actor = self.pool.take(node)
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    opened = await actor.open.remote(spec, data)
            except self.lost_or_late as exc:
                self._lost_on(node, actor)
                avoid.add(node)
                if len(avoid) >= OPEN_TRIES:
                    raise Lost(f"no node could take the stream: {exc}") from exc
                log.warning("stream %s could not open on node %s: %s", key, node[:12], exc)
                continue
            except BaseException:
                self._drop(actor, node)
                raise
            self.actors[key] = (actor, node)
            return opened

    async def call(self, key: str, method: str, args: tuple[Any, ...]) -> Any:
        held = self.actors.get(key)
        if held is None:
            raise Lost("the stream has no worker (the driver started again)")
        actor, node = held
        ref = getattr(actor, method).remote(*args)
        self.calls[key] = ref
        try:
            return await ref
        except self.lost as exc:
            self.actors.pop(key, None)
            self._lost_on(node, actor)
            raise Lost(f"its worker on node {node[:12]} is gone: {type(exc).__name__}") from exc
        finally:
            if self.calls.get(key) is ref:
                del self.calls[key]

    def cancel(self, key: str) -> None:
        """Cancel the stream's call in flight: the worker's coroutine is cancelled, which kills
        a running command's process group (`process.run_process`)."""
        import ray

        ref = self.calls.pop(key, None)
        if ref is not None:
            ray.cancel(ref)

    async def _no_room(self, avoid: set[str]) -> None:
        """No node has room now: fine if one will; an error if none ever can."""
        nodes = await self.placement.nodes()
        able = [n for n in nodes if self.placement.could_fit(n)]
        if not able:
            s = self.settings
            raise ValueError(
                f"no node of the cluster can ever take a stream of {s.stream_cpus:g} CPU(s) "
                f"and {s.stream_memory >> 20} MiB ([executors] ray_stream_cpus, "
                f"ray_stream_memory_mb); the nodes: "
                + (
                    ", ".join(f"{n.cpus:g} CPUs, {n.memory_total >> 20} MiB" for n in nodes)
                    or "none"
                )
            )
        if all(n.node_id in avoid for n in able):
            raise Lost("every node that could take the stream failed to make its worker")

    async def close(self, key: str) -> None:
        opening = self.opening.pop(key, None)
        if opening is not None and opening is not asyncio.current_task():
            opening.cancel()  # its worker, if it got one, is dropped there
        busy = key in self.calls
        self.cancel(key)
        held = self.actors.pop(key, None)
        if held is None:
            return
        actor, node = held
        if busy:  # a call was still running there: that worker serves nobody again
            self._drop(actor, node)
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await actor.close.remote()
        except Exception as exc:  # gone already, or stuck: ended below
            log.info("stream %s: its worker did not close cleanly: %s", key, exc)
            self._drop(actor, node)
            return
        self.placement.release(node)
        if not self.pool.give_back(node, actor):
            kill_worker(actor)

    def _drop(self, actor: Any, node: str) -> None:
        kill_worker(actor)
        self.placement.release(node)

    def _lost_on(self, node: str, actor: Any) -> None:
        """`actor` of `node` was lost: so is its room, and its idle peers are not trusted."""
        self._drop(actor, node)
        for idle in self.pool.forget(node):
            kill_worker(idle)


class Lost(Exception):
    """The stream's actor or node is gone."""


def _describe(exc: BaseException) -> str:
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"


async def _serve(driver: Driver, out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    lock = asyncio.Lock()
    running: set[asyncio.Task[None]] = set()

    async def reply(req_id: int, ok: bool, value: Any) -> None:
        async with lock:
            await write_frame(writer, (req_id, ok, value), big=True)

    async def one(req_id: int, op: str, args: tuple[Any, ...]) -> None:
        try:
            value = await driver.handle(op, args)
        except Lost as exc:
            await reply(req_id, False, ("lost", str(exc)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            kind = "lost" if isinstance(exc, driver.lost) else "error"
            await reply(req_id, False, (kind, _describe(exc)))
        else:
            await reply(req_id, True, value)

    while True:
        try:
            req_id, op, args = await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break  # the daemon is stopping or gone: so is this driver
        task = asyncio.create_task(one(req_id, op, args))
        running.add(task)
        task.add_done_callback(running.discard)
    # The workers' worktrees go with them (their state is saved in the user's repository).
    await asyncio.gather(*(driver.close(key) for key in list(driver.actors)))


def main() -> None:
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = DriverSettings(**json.loads(sys.argv[1]))
    import ray

    # Without an address the driver starts a Ray of its own on this machine (to try it).
    own: dict[str, Any] = {} if settings.address else {"include_dashboard": False}
    ray.init(
        address=settings.address or None,
        namespace="tierd",
        log_to_driver=False,
        configure_logging=False,
        **own,
    )
    log.info("connected to the Ray cluster (%s)", settings.address or "local")
    asyncio.run(_serve(Driver(settings), out_fd))


if __name__ == "__main__":
    main()
