"""The governor's reaction time to memory pressure, with scripted memory figures, and the CPU
cost of its real (psutil) readings. It runs in the bench's process, not in the daemon.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from daemon.governor.governor import ConcurrencySettings, Governor
from daemon.governor.memory import GiB, ScriptedSource, default_source
from daemon.tools.bench.harness import BenchError

__all__ = ["governor_reaction"]

#: Real readings timed for the CPU cost of one tick.
REAL_TICKS = 40


async def _until(pred: Callable[[], bool], limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        if time.monotonic() > deadline:
            raise BenchError(f"the governor did not react within {limit_s:.0f}s")
        await asyncio.sleep(0.001)


async def _scripted_pressure(cycles: int) -> tuple[int, dict[str, Any]]:
    """`cycles` times: pressure above the hard limit, then above the soft one.

    Returns the reading interval and the governor's stats."""
    source = ScriptedSource(total=16 * GiB)
    source.set(used_fraction=0.5)
    settings = ConcurrencySettings(ceiling=5, cooldown_s=0.0)
    gov = Governor(settings, source=source)
    rng = random.Random(5)
    await gov.start()
    try:
        for _ in range(cycles):
            # Pressure lands anywhere within a reading interval.
            await asyncio.sleep(rng.uniform(0, settings.interval_ms / 1000))
            source.set(used_fraction=0.97)  # above hard: nothing new is dispatched
            await _until(lambda: gov.limit == 0)
            source.set(used_fraction=0.90)  # above soft: back to the floor (no cool-down)
            await _until(lambda: gov.limit >= 1)
    finally:
        await gov.stop()
    return settings.interval_ms, gov.stats()


async def governor_reaction(cycles: int) -> dict[str, Any]:
    """Reaction time with scripted memory figures, and the CPU of real readings."""
    interval_ms, scripted = await _scripted_pressure(cycles)
    real = Governor(ConcurrencySettings(), source=default_source())
    for _ in range(REAL_TICKS):
        await real.tick()
    rs = real.stats()
    reaction = scripted["lower_reaction_s"]
    interval = ConcurrencySettings().interval_ms
    return {
        "interval_ms": interval_ms,
        "lowerings": scripted["lowerings"],
        "reaction_ms": {
            "mean": reaction["mean"] * 1000,
            "max": reaction["max"] * 1000,
            "n": reaction["count"],
        },
        "tick_cpu_ms": {k: rs["tick_cpu_s"][k] * 1000 for k in ("mean", "max")},
        "tick_wall_ms": {k: rs["tick_wall_s"][k] * 1000 for k in ("mean", "max")},
        "ticks_measured": rs["ticks"],
        "cpu_share_of_core": rs["tick_cpu_s"]["mean"] / (interval / 1000),
    }
