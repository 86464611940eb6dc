"""The per-node governor: which node a new stream goes to, and whether any has room now.

Runs in the Ray driver. Each live node's CPUs come from Ray (`ray.nodes()`), its memory from the
node itself (a zero-CPU probe pinned to it reads `psutil`, as the daemon's own governor does on
its machine). A node has room for `min(cpu_room, memory_room)` more streams:
- `cpu_room`: its CPUs (as Ray knows them) over `stream_cpus`, less the streams placed there
  (the workers hold no CPUs in Ray: idle ones are kept warm, see `pool`);
- `memory_room`: what fits under the soft threshold (`[concurrency] soft`, 80 %) at
  `stream_memory` each, less the streams placed since the reading (not in it yet).
A stream goes to the node with the most room (spreading the load); with none anywhere it waits.
The daemon-wide ceiling (`[concurrency] ceiling`) still holds: every stream took a slot of the
daemon's governor before it got here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["NodeRoom", "Placement", "room_for"]

log = logging.getLogger("tierd.ray.placement")

#: How often the nodes and their memory are read.
READING_S = 1.0
#: How long a reading waits for a node's memory before the node counts as having no room (for
#: that reading: the question stays asked, see `Placement._ask`).
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class NodeRoom:
    """One live node, as the placement sees it."""

    node_id: str
    address: str
    cpus: float
    memory_total: int
    memory_available: int
    streams: int
    room: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def room_for(
    *,
    cpus: float,
    total: int,
    available: int,
    placed: int,
    since_reading: int,
    stream_cpus: float,
    stream_memory: int,
    soft: float,
) -> int:
    """How many more streams a node takes: the fewer of what its CPUs and its memory allow."""
    if total <= 0:
        return 0  # no memory reading: the node did not answer
    cpu_room = math.floor(cpus / stream_cpus + 1e-9) - placed
    spare = available - (1.0 - soft) * total
    memory_room = math.floor(spare / stream_memory) - since_reading
    # A stream placed a while ago may not use its memory yet: all of them must fit too.
    budget_room = math.floor(soft * total / stream_memory) - placed
    return max(0, min(cpu_room, memory_room, budget_room))


class NodeProbe:
    """A zero-CPU actor pinned to one node: reads the node's memory in a few milliseconds
    (a plain Ray task would wait for a worker process to start on every reading)."""

    def memory(self) -> tuple[int, int]:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)


class Placement:
    """Places streams on nodes with room; counts what it placed.

    The nodes and their memory are read in the background every `READING_S` (`watch`), so a
    placement never waits on the cluster.
    """

    def __init__(
        self,
        stream_cpus: float,
        stream_memory: int,
        soft: float,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.stream_cpus = stream_cpus
        self.stream_memory = stream_memory
        self.soft = soft
        self.probe_timeout_s = probe_timeout_s
        self.placed: Counter[str] = Counter()
        self._since_reading: Counter[str] = Counter()
        self._memory: dict[str, tuple[int, int]] = {}
        self._alive: list[dict[str, Any]] = []
        self._probes: dict[str, Any] = {}
        self._asked: dict[str, Any] = {}  # node -> its probe's answer not yet read (ObjectRef)
        self._read = asyncio.Event()
        self._watching: asyncio.Task[None] | None = None

    async def watch(self) -> None:
        """Start reading the cluster in the background; return once it was read once."""
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch())
        await self._read.wait()

    async def _watch(self) -> None:
        while True:
            try:
                await self._read_cluster()
            except Exception as exc:  # the cluster's head briefly unreachable: read again
                log.warning("could not read the cluster's nodes: %s", exc)
            self._read.set()
            await asyncio.sleep(READING_S)

    async def _read_cluster(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = [n for n in await asyncio.to_thread(ray.nodes) if n.get("Alive")]
        ids = {str(n["NodeID"]) for n in alive}
        for gone in set(self._probes) - ids:
            del self._probes[gone]
            self._asked.pop(gone, None)
        remote = ray.remote(NodeProbe)
        for node_id in ids - set(self._probes):
            self._probes[node_id] = remote.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=0,
            ).remote()

        readings = await asyncio.gather(*(self._ask(n) for n in ids))
        self._memory = {n: m for n, m in readings if m is not None}
        self._alive = alive
        self._since_reading.clear()

    async def _ask(self, node_id: str) -> tuple[str, tuple[int, int] | None]:
        """`node_id`'s memory (total, available), or None if it has not answered in time.

        A question not answered in time stays asked: the next reading waits for the same
        answer. A new probe starts a worker process on its node (about a second here, several
        on a loaded node); dropping it at each timeout killed it and started another, and a
        node slower to start one than the timeout never reported its memory, so a stream
        waited for room for ever (seen on a loaded CI machine).
        """
        asked = self._asked.get(node_id)
        if asked is None:
            asked = self._asked[node_id] = self._probes[node_id].memory.remote()
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                total, available = await asked
        except TimeoutError:
            log.info(
                "node %s has not reported its memory yet (waited %g s): no room for now",
                node_id[:12],
                self.probe_timeout_s,
            )
            return node_id, None
        except Exception as exc:  # the probe died with its node: made again at the next reading
            log.info("node %s did not report its memory: %r", node_id[:12], exc)
            self._probes.pop(node_id, None)
            self._asked.pop(node_id, None)
            return node_id, None
        del self._asked[node_id]
        return node_id, (int(total), int(available))

    async def nodes(self) -> list[NodeRoom]:
        """The live nodes with their room now (as last read)."""
        await self.watch()
        alive = self._alive
        rooms = []
        for n in alive:
            node_id = str(n["NodeID"])
            cpus = float(n.get("Resources", {}).get("CPU", 0.0))
            total, available = self._memory.get(node_id, (0, 0))
            ours = self.placed[node_id]
            room = room_for(
                cpus=cpus,
                total=total,
                available=available,
                placed=ours,
                since_reading=self._since_reading[node_id],
                stream_cpus=self.stream_cpus,
                stream_memory=self.stream_memory,
                soft=self.soft,
            )
            address = str(n.get("NodeManagerAddress", ""))
            rooms.append(NodeRoom(node_id, address, cpus, total, available, ours, room))
        return rooms

    def could_fit(self, node: NodeRoom) -> bool:
        """Whether `node` could take a stream at all (idle, with nothing else running)."""
        unread = node.memory_total == 0  # its probe did not answer: not judged on memory
        return node.cpus + 1e-9 >= self.stream_cpus and (
            unread or self.soft * node.memory_total >= self.stream_memory
        )

    async def choose(self, avoid: frozenset[str] = frozenset()) -> str | None:
        """The node with the most room (not in `avoid`), counted as placed; None if none has."""
        rooms = [r for r in await self.nodes() if r.room > 0 and r.node_id not in avoid]
        if not rooms:
            return None
        best = max(rooms, key=lambda r: (r.room, -r.streams))
        self.placed[best.node_id] += 1
        self._since_reading[best.node_id] += 1
        return best.node_id

    def release(self, node_id: str) -> None:
        """A stream placed on `node_id` ended there."""
        if self.placed[node_id] > 0:
            self.placed[node_id] -= 1
