"""Measuring: percentiles, a process's CPU time (by thread), a thread pool's CPU time, peak
memory, and the machine.

Nothing here knows about tierd: these are the bench's instruments.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import psutil

from daemon import __version__

__all__ = [
    "MeteredExecutor",
    "RssPoller",
    "cpu_s",
    "cpu_split",
    "machine_info",
    "metered_default_executor",
    "pct",
    "spread",
    "summary_ms",
]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """n, p50, p99, mean and max of durations in seconds, in milliseconds."""
    ms = [v * 1000 for v in seconds]
    return {
        "n": len(ms),
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "mean": statistics.fmean(ms) if ms else 0.0,
        "max": max(ms, default=0.0),
    }


def spread(values: Iterable[float]) -> float:
    """The distance between the largest and the smallest value (0 for none)."""
    v = list(values)
    return max(v) - min(v) if v else 0.0


def cpu_s(proc: psutil.Process) -> float:
    """CPU seconds (user + system) the process has used."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def cpu_split(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the main (event-loop) thread and of all other live threads."""
    main = other = 0.0
    with contextlib.suppress(psutil.Error):
        for t in proc.threads():
            if t.id == proc.pid:
                main += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
    return main, other


class MeteredExecutor(ThreadPoolExecutor):
    """A thread pool that can say how much CPU its threads have used.

    A pool's threads live until it shuts down, so the sum of their CPU clocks only grows:
    two readings' difference is what the pool ran in between.
    """

    def __init__(self, thread_name_prefix: str = "asyncio") -> None:
        super().__init__(thread_name_prefix=thread_name_prefix, initializer=self._started)
        self._idents: list[int] = []
        self._idents_lock = threading.Lock()

    def _started(self) -> None:
        with self._idents_lock:
            self._idents.append(threading.get_ident())

    def cpu_s(self) -> float:
        """CPU seconds (user + system) its threads have used so far."""
        with self._idents_lock:
            idents = list(self._idents)
        total = 0.0
        for ident in idents:
            with contextlib.suppress(OSError):  # a thread that has ended
                total += time.clock_gettime(time.pthread_getcpuclockid(ident))
        return total


_METERED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MeteredExecutor] = (
    weakref.WeakKeyDictionary()
)


def metered_default_executor() -> MeteredExecutor:
    """The running loop's default executor, replaced on first use by a `MeteredExecutor`.

    litellm's `acompletion` runs its synchronous part with `run_in_executor(None, ...)`: a
    client's CPU is its calling thread's plus what it ran there. The pool stays the loop's
    default for the rest of its life (`asyncio.run` shuts it down); one created before is
    left to idle until the process ends.
    """
    loop = asyncio.get_running_loop()
    pool = _METERED.get(loop)
    if pool is None:
        pool = MeteredExecutor()
        loop.set_default_executor(pool)
        _METERED[loop] = pool
    return pool


class RssPoller:
    """Peak resident memory of a process, polled from a thread."""

    def __init__(self, proc: psutil.Process, interval: float = 0.02) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info() -> dict[str, Any]:
    """The machine and the versions the figures were measured with."""
    vm = psutil.virtual_memory()
    return {
        "cpu_count": os.cpu_count(),
        "memory_bytes": vm.total,
        "memory_gib": vm.total / 2**30,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": {
            "tierd": __version__,
            "litellm": _version("litellm"),
            "langgraph": _version("langgraph"),
        },
    }
