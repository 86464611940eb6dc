"""A real multi-node Ray cluster on this machine, for the tests and `tierd bench`.

Ray's own `ray.cluster_utils.Cluster` starts a head and worker nodes as separate raylets (each
a node with its own id, CPUs and object store, as on separate machines). The head takes no
stream (0 CPUs); each worker node takes `cpus` streams. This process never connects to it as a
driver (that is the daemon's driver's job), so it may go on starting processes.

`kill_node` is a machine dying: the node's raylet and everything under it (the workers, their
commands) get SIGKILL at once, and Ray's health checks (tightened here to about 1.5 s) mark it
dead. Used only by tooling: the daemon reaches any cluster through `ray_address`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LocalRayCluster", "local_ray_cluster", "ray_env"]

#: Ray's settings for a cluster of tierd's tooling: no usage reports, no token, no uv runtime
#: environment (the nodes use this Python), no memory monitor killing workers on a busy machine.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_memory_monitor_refresh_ms": "0",
    "RAY_DEDUP_LOGS": "0",
}
#: A dead node is noticed after about 1.5 s (Ray's default is tens of seconds).
HEALTH = {
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_timeout_ms": 500,
}
MiB = 1 << 20


def ray_env() -> dict[str, str]:
    """`RAY_ENV` set in this process (the cluster's processes and the daemons inherit it)."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    return dict(RAY_ENV)


@dataclass
class LocalRayCluster:
    """The cluster and its worker nodes."""

    cluster: Any
    cpus: int
    nodes: list[Any] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self) -> Any:
        node = self.cluster.add_node(num_cpus=self.cpus, object_store_memory=80 * MiB)
        self.cluster.wait_for_nodes()
        self.nodes.append(node)
        return node

    def node(self, node_id: str) -> Any:
        """The worker node with this id (a stream's record names it)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no live worker node {node_id}")

    def kill_node(self, node: Any) -> None:
        """SIGKILL the node's raylet and everything under it, as a dying machine would."""
        import psutil

        raylet = node.all_processes["raylet"][0].process
        try:
            root = psutil.Process(raylet.pid)
            procs = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        self.nodes.remove(node)
        try:
            self.cluster.remove_node(node, allow_graceful=False)
        except Exception:  # its processes are gone already; only the bookkeeping is left
            pass

    def shutdown(self) -> None:
        self.cluster.shutdown()


@contextmanager
def local_ray_cluster(worker_nodes: int, cpus: int = 2) -> Iterator[LocalRayCluster]:
    """A head (no CPUs) and `worker_nodes` nodes of `cpus` CPUs each, shut down on exit."""
    ray_env()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": 100 * MiB,
            "_system_config": HEALTH,
        },
    )
    local = LocalRayCluster(cluster, cpus)
    try:
        for _ in range(worker_nodes):
            local.add_node()
        yield local
    finally:
        local.shutdown()


def main(argv: list[str] | None = None) -> int:
    """`python -m daemon.tools.ray_cluster [--nodes N]`: a local cluster until Ctrl-C, to try
    the `ray` backend on one machine (its address is printed for `[executors] ray_address`)."""
    import argparse
    import threading

    parser = argparse.ArgumentParser(prog="python -m daemon.tools.ray_cluster")
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of each worker node")
    args = parser.parse_args(argv)
    stop = threading.Event()
    with local_ray_cluster(args.nodes, args.cpus) as cluster:
        print(f'ray_address = "{cluster.address}"  ({args.nodes} worker nodes + a head)')
        print("Ctrl-C stops the cluster")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
