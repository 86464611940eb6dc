"""The sampler: takes memory readings, one now and then every `interval_ms`, each in a worker
thread (never on the event loop), and measures what each tick costs.

A tick is the reading plus the governor's decision on it. Its CPU time (the reading's, in its
thread, plus the decision's, on the loop) and wall time are what `Governor.stats` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from daemon.governor.memory import MemoryReading, MemorySource

log = logging.getLogger("tierd.governor")


@dataclass
class Timing:
    """Running figures of one measured quantity, for `stats()`."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0
    max: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.last = value
        self.max = max(self.max, value)

    def as_dict(self) -> dict[str, float | int]:
        mean = self.total / self.count if self.count else 0.0
        return {
            "count": self.count,
            "last": self.last,
            "mean": mean,
            "max": self.max,
            "total": self.total,
        }


@dataclass(frozen=True)
class Sample:
    """One reading and what it cost so far."""

    reading: MemoryReading
    #: When (on the governor's clock) the reading started.
    taken_at: float
    #: CPU time of the reading in its worker thread.
    read_cpu: float
    #: `time.perf_counter()` when the tick started.
    wall0: float


class Sampler:
    """Reads `source` on demand or every `interval_s`, counting readings and their costs."""

    def __init__(self, source: MemorySource, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock
        self._loop_task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.reading_errors = 0
        self.tick_cpu = Timing()
        self.tick_wall = Timing()

    async def read(self) -> Sample:
        """Take one reading in a worker thread; a failed one is counted, logged and raised."""
        wall0 = time.perf_counter()
        taken_at = self._clock()
        try:
            reading, read_cpu = await asyncio.to_thread(self._read)
        except Exception as exc:
            self.reading_errors += 1
            log.warning("governor reading failed: %r", exc)
            raise
        return Sample(reading, taken_at, read_cpu, wall0)

    def _read(self) -> tuple[MemoryReading, float]:
        # Runs in a worker thread; the thread's own CPU time is the cost of the reading.
        cpu0 = time.thread_time()
        reading = self._source.read()
        return reading, time.thread_time() - cpu0

    @contextlib.contextmanager
    def deciding(self, sample: Sample) -> Iterator[None]:
        """Measure the decision on `sample` (the body) and count the tick it completes.

        The body must not await: the decision is atomic on the loop, and its CPU is this
        thread's alone.
        """
        cpu0 = time.thread_time()
        yield
        self.ticks += 1
        self.tick_cpu.add(sample.read_cpu + time.thread_time() - cpu0)
        self.tick_wall.add(time.perf_counter() - sample.wall0)

    @property
    def running(self) -> bool:
        return self._loop_task is not None

    def start(self, tick: Callable[[], Awaitable[None]], interval_s: float) -> None:
        """Call `tick` every `interval_s` until `stop`."""
        if self._loop_task is None:
            run = self._run(tick, interval_s)
            self._loop_task = asyncio.create_task(run, name="tierd-governor")

    async def stop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _run(tick: Callable[[], Awaitable[None]], interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await tick()
            except Exception:  # pragma: no cover - tick handles its own failures
                log.exception("governor tick failed")

    def stats(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "reading_errors": self.reading_errors,
            "tick_cpu_s": self.tick_cpu.as_dict(),
            "tick_wall_s": self.tick_wall.as_dict(),
        }
