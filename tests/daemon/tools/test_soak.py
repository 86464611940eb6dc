"""The soak: a short steady load on a real daemon ends with a "no leak" verdict, and the
verdict itself catches the leaks it is meant to catch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from daemon.tools.soak import Sample, judge

MiB = 2**20


def samples(rss_mib: list[float], fds: int = 20) -> list[Sample]:
    return [Sample(float(i), int(r * MiB), fds, 8, 10, 2) for i, r in enumerate(rss_mib)]


def idle(fds: int = 20, threads: int = 8, tasks: int = 5, active: int = 0) -> Sample:
    return Sample(0.0, 200 * MiB, fds, threads, tasks, active)


def test_judge_passes_a_flat_run_and_catches_each_leak() -> None:
    flat = samples([200, 230, 231, 229, 232, 230, 231, 233, 230, 232])
    assert judge(flat, idle(), idle()).ok
    # Memory that keeps growing under a steady load.
    growing = samples([200 + 20 * i for i in range(12)])
    verdict = judge(growing, idle(), idle())
    assert not verdict.ok
    assert [c["name"] for c in verdict.checks if not c["ok"]] == ["rss growth"]
    # File descriptors, threads or asyncio tasks left behind once idle.
    for leak, name in (
        (idle(fds=40), "idle open_fds"),
        (idle(threads=15), "idle threads"),
        (idle(tasks=30), "idle asyncio_tasks"),
        (idle(active=1), "idle tasks"),
    ):
        verdict = judge(flat, idle(), leak)
        assert [c["name"] for c in verdict.checks if not c["ok"]] == [name]
    # Too short a run to judge is not a pass.
    assert not judge(samples([200, 201]), idle(), idle()).ok


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
            "2",
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
    assert counts["submitted"] >= 10 and counts["canceled"] >= 1
    assert counts["streams"] >= 5 and counts["events"] > 0 and counts["reads"] > 0
    assert not counts["errors"]
    assert len(report["samples"]) >= 5
    assert report["idle_after"]["active_tasks"] == 0
