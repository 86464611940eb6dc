"""The per-node room: what a node's CPUs and memory allow, whichever is fewer, and a node's
memory read on a real cluster."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.engine.code.ray.placement import Placement, room_for
from daemon.tools.ray_cluster import local_ray_cluster

GiB = 1 << 30


def room(**kw: float) -> int:
    args = {
        "cpus": 4.0,
        "total": 16 * GiB,
        "available": 12 * GiB,
        "placed": 0,
        "since_reading": 0,
        "stream_cpus": 1.0,
        "stream_memory": 1 * GiB,
        "soft": 0.8,
    }
    args.update(kw)
    return room_for(**args)  # type: ignore[arg-type]


def test_cpus_bound_a_node_with_memory_to_spare() -> None:
    assert room() == 4
    assert room(placed=3) == 1 and room(placed=4) == 0 and room(placed=5) == 0


@pytest.mark.parametrize(
    ("available_gib", "expected"),
    [(12, 4), (5.3, 2), (4.5, 1), (3.1, 0), (1, 0)],
)
def test_memory_bounds_what_fits_under_the_soft_threshold(
    available_gib: float, expected: int
) -> None:
    # 16 GiB at soft 0.8: 3.2 GiB must stay free; each stream takes 1 GiB of the rest.
    assert room(available=int(available_gib * GiB)) == expected


def test_streams_placed_since_the_reading_count_against_its_memory() -> None:
    assert room(available=5 * GiB, since_reading=1) == 0
    assert room(available=6 * GiB, since_reading=1) == 1


def test_fractional_cpus_and_a_node_without_a_reading() -> None:
    assert room(cpus=2.0, stream_cpus=0.5) == 4
    assert room(cpus=3.0, stream_cpus=2.0) == 1
    assert room(cpus=0.0) == 0  # a head that takes no work
    assert room(total=0, available=0) == 0


def test_streams_placed_long_ago_still_count_against_the_memory_budget() -> None:
    # 16 GiB at soft 0.8: 12.8 GiB for streams of 1 GiB; twelve placed, whatever the reading.
    assert room(cpus=64.0, placed=11) == 1
    assert room(cpus=64.0, placed=12) == 0


async def test_a_node_slower_to_answer_than_a_reading_waits_still_reports_its_memory() -> None:
    """A new probe takes about a second to answer (a worker process starts on its node), on a
    loaded machine longer than a reading waits: the question stays asked across readings, so
    the answer arrives at a later one. Dropped at each timeout, the probe was killed and made
    again, and such a node never had room (streams waited for ever on a loaded CI machine)."""
    import ray

    with local_ray_cluster(worker_nodes=1, cpus=2) as cluster:
        ray.init(address=cluster.address, namespace="tierd", log_to_driver=False)
        try:
            placement = Placement(2.0, 64 << 20, 0.8, probe_timeout_s=0.2)
            await placement.watch()
            node = cluster.nodes[0].node_id
            first = {n.node_id: n for n in await placement.nodes()}[node]
            # The case under test: the probe did not answer within the first reading's wait.
            assert first.memory_total == 0 and first.room == 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = {n.node_id: n for n in await placement.nodes()}[node]
                if now.memory_total:
                    break
                await asyncio.sleep(0.1)
            assert now.memory_total > 0, "the node never reported its memory"
            assert now.room == 1
        finally:
            ray.shutdown()
