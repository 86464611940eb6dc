"""The daemon's own resource use, for `daemon/status` and the soak test.

Leaks show up as numbers that only grow under a steady load: resident memory, open file
descriptors, threads and asyncio tasks. Reading them for our own process is a few small
/proc reads, cheap enough to do on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os

import psutil

from daemon.service.results import ProcessView


@functools.cache
def _process(pid: int) -> psutil.Process:
    return psutil.Process(pid)


def process_snapshot() -> ProcessView:
    """Resident memory, open fds, threads and live asyncio tasks of this process."""
    # Looked up by the current pid, not made at import: a process forked after the import
    # (a fork server, a pre-forking supervisor) must report itself, not its parent.
    process = _process(os.getpid())
    with process.oneshot():
        rss = process.memory_info().rss
        threads = process.num_threads()
        fds = process.num_fds() if hasattr(process, "num_fds") else None
    try:
        tasks: int | None = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = None
    return ProcessView(rss_bytes=rss, open_fds=fds, threads=threads, asyncio_tasks=tasks)
