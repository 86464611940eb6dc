"""The `[executors]` table: where code streams work, and how the Ray backend places them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKENDS", "RaySettings"]

BACKENDS = ("local", "ray")
MiB = 1 << 20


@dataclass(frozen=True)
class RaySettings:
    """The Ray backend's settings (read at the daemon's start)."""

    #: `ray.init`'s address ("auto", "ray://host:10001", "host:6379"); "": a Ray of the
    #: driver's own on this machine.
    address: str = ""
    #: CPUs a stream counts for on its node (the per-node room).
    stream_cpus: float = 1.0
    #: Memory one stream is expected to use on its node (worktree, commands).
    stream_memory: int = 1024 * MiB
    #: Where nodes make worktrees ("": `tierd-ray` in the node's temporary directory).
    workdir: str = ""
    #: The share of a node's memory in use above which no new stream goes there.
    soft: float = 0.80

    @classmethod
    def from_config(cls, get: Callable[[str], Any]) -> RaySettings:
        return cls(
            address=str(get("executors.ray_address")).strip(),
            stream_cpus=float(get("executors.ray_stream_cpus")),
            stream_memory=int(get("executors.ray_stream_memory_mb")) * MiB,
            workdir=str(get("executors.ray_workdir")).strip(),
            soft=float(get("concurrency.soft")),
        )

    def driver_argument(self) -> str:
        """The driver's one argument (`bridge_main.DriverSettings` as JSON)."""
        return json.dumps(
            {
                "address": self.address,
                "workdir": self.workdir,
                "stream_cpus": self.stream_cpus,
                "stream_memory": self.stream_memory,
                "soft": self.soft,
            }
        )
