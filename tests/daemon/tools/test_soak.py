"""The soak: a short steady load on a real daemon ends with a "no leak" verdict, and the
verdict itself catches the leaks it is meant to catch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from daemon.tools.leaks import LEAK_BYTES_PER_REQUEST, Sample, Verdict, judge

MiB, KiB = 2**20, 1024
#: Requests answered between two samples, as in the CI run (about 8 a second).
PER_SAMPLE = 8


def samples(rss_mib: list[float], fds: int = 20) -> list[Sample]:
    return [
        Sample(float(i), int(r * MiB), fds, 8, 10, 2, work=i * PER_SAMPLE)
        for i, r in enumerate(rss_mib)
    ]


def idle(fds: int = 20, threads: int = 8, tasks: int = 5, active: int = 0) -> Sample:
    return Sample(0.0, 200 * MiB, fds, threads, tasks, active)


def wobble(i: int) -> float:
    """Allocator noise: up to half a MiB either way, not following the work."""
    return 0.5 * ((i * 7919) % 11 - 5) / 5


def failed(verdict: Verdict) -> list[str]:
    return [c["name"] for c in verdict.checks if not c["ok"]]


def test_judge_passes_a_flat_run_and_catches_each_leak() -> None:
    flat = samples([200, 230, 231, 229, 232, 230, 231, 233, 230, 232, 231, 230])
    assert judge(flat, idle(), idle()).ok
    # File descriptors, threads or asyncio tasks left behind once idle.
    for leak, name in (
        (idle(fds=40), "idle open_fds"),
        (idle(threads=15), "idle threads"),
        (idle(tasks=30), "idle asyncio_tasks"),
        (idle(active=1), "idle tasks"),
    ):
        assert failed(judge(flat, idle(), leak)) == [name]
    # Too short a run to judge is not a pass.
    assert not judge(samples([200, 201, 202, 203, 204]), idle(), idle()).ok


def test_memory_is_judged_by_its_slope_against_the_work_done() -> None:
    # The healthy daemon of the CI run: ~15 KiB per request, with noise, over 20 samples.
    healthy = samples([250 + i * PER_SAMPLE * 15 / 1024 + wobble(i) for i in range(20)])
    assert judge(healthy, idle(), idle()).ok
    # One jump of the heap (an arena, a cache) in an otherwise flat run is not a leak.
    jump = samples([250 + (12 if i >= 11 else 0) + wobble(i) for i in range(20)])
    assert judge(jump, idle(), idle()).ok
    # 256 KiB kept on each of half the requests (the task/get leak): ~1 MiB/s at 8 a second.
    leaking = samples([250 + i * PER_SAMPLE * 128 / 1024 + wobble(i) for i in range(20)])
    verdict = judge(leaking, idle(), idle())
    assert failed(verdict) == ["rss per request"]
    memory = verdict.checks[0]
    assert 120 * KiB < memory["bytes_per_request"] < 136 * KiB
    # Samples with no work between them cannot be judged: that is not a pass.
    no_work = [Sample(s.t, s.rss_bytes, 20, 8, 10, 2, work=0) for s in samples([250] * 20)]
    assert failed(judge(no_work, idle(), idle())) == ["rss per request"]
    # The threshold sits between the two.
    assert 15 * KiB < LEAK_BYTES_PER_REQUEST < 100 * KiB


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_soak_finds_no_leak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.tools.soak",
            "--seconds",
            "20",
            "--sample-s",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["ok"] and all(c["ok"] for c in report["checks"])
    counts = report["counts"]
    # The load really ran: tasks, cancels, streams with events, reads.
    assert counts["submitted"] >= 8 and counts["canceled"] >= 1
    assert counts["streams"] >= 5 and counts["events"] > 0 and counts["reads"] > 0
    # The memory verdict had enough work to judge: fifty requests and more, even on a busy machine.
    assert counts["requests"] >= 50
    assert report["samples"][-1]["work"] > report["samples"][0]["work"]
    assert not counts["errors"]
    assert len(report["samples"]) >= 5
    assert report["idle_after"]["active_tasks"] == 0
