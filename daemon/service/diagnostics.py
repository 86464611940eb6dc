"""The daemon's own resource use, for `daemon/status` and the soak test.

Leaks show up as numbers that only grow under a steady load: resident memory, open file
descriptors, threads and asyncio tasks. Reading them for our own process is a few small
/proc reads, cheap enough to do on the event loop.
"""

from __future__ import annotations

import asyncio

import psutil

from daemon.service.results import ProcessView

_PROCESS = psutil.Process()


def process_snapshot() -> ProcessView:
    """Resident memory, open fds, threads and live asyncio tasks of this process."""
    with _PROCESS.oneshot():
        rss = _PROCESS.memory_info().rss
        threads = _PROCESS.num_threads()
        fds = _PROCESS.num_fds() if hasattr(_PROCESS, "num_fds") else None
    try:
        tasks: int | None = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = None
    return ProcessView(rss_bytes=rss, open_fds=fds, threads=threads, asyncio_tasks=tasks)
