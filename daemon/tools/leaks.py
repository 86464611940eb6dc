"""The soak's verdict on leaks: from the daemon's process figures sampled under a steady load
and once idle before and after it, say whether anything grows that should not.

Memory is judged by how resident memory (RSS) grows with the work the daemon does, not by
how much it grew in total. A fixed allowance cannot tell a leak from noise in a short run: a
healthy daemon's RSS wanders by megabytes (allocator arenas, SQLite's page cache, lazily
built pools) while a leak of 256 KiB per `task/get` adds a megabyte or so a second. They
differ in shape: a leak grows in step with the requests, all the time; noise levels off or
jumps once. So after a warm-up the verdict fits a straight line (least squares) to RSS against
the cumulative number of requests answered, in each half of the run, and calls it a leak when
both halves keep more than `LEAK_BYTES_PER_REQUEST` per request. The threshold sits between
what a healthy daemon shows in the 20-second CI run (15 to 30 KiB per request measured on a
busy two-core machine: the first tasks filling caches) and what the leak the CI run must find
shows (256 KiB kept per `task/get`, 1 MiB/s at the soak's pace on a quiet machine: 160 to 210
KiB per request, however slow the machine, since the soak keeps its mix of reads and submits
fixed). The check's detail also gives the slope in MiB/s of the run, for people.

File descriptors, threads and asyncio tasks must come back to their idle figures once the load
stops (a small slack for pools that size themselves lazily), and no task may be left running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ASYNCIO_TASK_SLACK",
    "FD_SLACK",
    "LEAK_BYTES_PER_REQUEST",
    "THREAD_SLACK",
    "Sample",
    "Verdict",
    "judge",
    "slope",
]

KiB = 1024
#: RSS kept per request above which the run leaks (see the module docstring for the choice).
LEAK_BYTES_PER_REQUEST = 48 * KiB
#: The share of the samples under load treated as warm-up (caches and pools filling).
WARMUP_FRACTION = 0.25
#: Fewer samples than this after the warm-up cannot be judged.
MIN_SAMPLES = 8
#: Allowed excess over the idle baseline once idle again.
FD_SLACK = 4
THREAD_SLACK = 2
ASYNCIO_TASK_SLACK = 2


@dataclass
class Sample:
    """The daemon's process figures at one moment (`t`: monotonic seconds)."""

    t: float
    rss_bytes: int
    open_fds: int
    threads: int
    asyncio_tasks: int
    active_tasks: int
    #: Requests of the load the daemon had answered by then: the "work done" axis.
    work: int = 0


@dataclass
class Verdict:
    ok: bool
    checks: list[dict[str, Any]]


def slope(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ys against xs; None when xs do not vary."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _per_request(samples: list[Sample]) -> float | None:
    return slope([float(s.work) for s in samples], [float(s.rss_bytes) for s in samples])


def _memory_check(load: list[Sample]) -> dict[str, Any]:
    name = "rss per request"
    steady = load[int(len(load) * WARMUP_FRACTION) :]
    if len(steady) < MIN_SAMPLES:
        detail = f"only {len(steady)} samples after the warm-up (at least {MIN_SAMPLES})"
        return {"name": name, "ok": False, "detail": detail}
    middle = len(steady) // 2
    overall = _per_request(steady)
    halves = [_per_request(steady[: middle + 1]), _per_request(steady[middle:])]
    if overall is None or None in halves:
        return {"name": name, "ok": False, "detail": "no work done under load"}
    # A leak keeps growing with the work in both halves of the run; one step of the heap
    # (an allocator arena, a cache filling) shows in one half only.
    sustained = min(h for h in halves if h is not None)
    seconds = steady[-1].t - steady[0].t
    rate = (steady[-1].work - steady[0].work) / seconds if seconds > 0 else 0.0
    return {
        "name": name,
        "ok": sustained <= LEAK_BYTES_PER_REQUEST,
        "detail": f"{overall / KiB:+.1f} KiB kept per request over {len(steady)} samples, "
        f"{sustained / KiB:+.1f} at least in each half (limit "
        f"{LEAK_BYTES_PER_REQUEST / KiB:.0f}); at {rate:.1f} requests/s that is "
        f"{overall * rate / 2**20:+.2f} MiB/s",
        "bytes_per_request": overall,
        "sustained_bytes_per_request": sustained,
        "requests_per_s": rate,
    }


def judge(load: list[Sample], idle_before: Sample, idle_after: Sample) -> Verdict:
    """Leak or not, from the samples under load and the idle figures before and after."""
    checks = [_memory_check(load)]
    for name, slack in (
        ("open_fds", FD_SLACK),
        ("threads", THREAD_SLACK),
        ("asyncio_tasks", ASYNCIO_TASK_SLACK),
    ):
        before, after = getattr(idle_before, name), getattr(idle_after, name)
        checks.append(
            {
                "name": f"idle {name}",
                "ok": after <= before + slack,
                "detail": f"{before} before the load, {after} after (slack {slack})",
            }
        )
    checks.append(
        {
            "name": "idle tasks",
            "ok": idle_after.active_tasks == 0,
            "detail": f"{idle_after.active_tasks} unfinished tasks once idle",
        }
    )
    return Verdict(all(c["ok"] for c in checks), checks)
