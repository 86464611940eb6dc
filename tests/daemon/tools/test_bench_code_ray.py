"""`tierd bench`'s code workload on a local Ray cluster beside the local run: the comparison
of the two runs' figures, the nodes read from the streams' records, and the printed table.

Pure functions on hand-made figures: the end-to-end run (a three-node cluster, a second
daemon) is `tierd bench --only code-ray`, too slow for a unit test.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from daemon.tools.bench import code_ray
from daemon.tools.bench.code_ray import compare_runs, run_code_ray, stream_nodes
from daemon.tools.bench.code_report import code_ray_caption, code_ray_table
from daemon.tools.bench.report import print_report


def stream(stream_s: float, other_s: float) -> dict[str, Any]:
    return {"stream_s": stream_s, "other_s": other_s}


def figures(wall: float, cpu: float, **per_stream: dict[str, Any]) -> dict[str, Any]:
    return {
        "wall_clock_s": wall,
        "tierd_s": wall - 1,
        "daemon_cpu_ms_per_stream": cpu,
        "per_stream": per_stream,
    }


LOCAL = figures(10.0, 30.0, a=stream(2.0, 0.5), b=stream(4.0, 1.0))
RAY = figures(13.0, 20.0, a=stream(2.5, 0.75), b=stream(5.5, 2.0))


def test_the_overhead_is_ray_minus_local_per_stream() -> None:
    c = compare_runs(LOCAL, RAY)
    assert c["streams"] == 2
    assert c["per_stream"]["a"]["overhead_ms"] == pytest.approx(500)
    assert c["per_stream"]["b"]["overhead_ms"] == pytest.approx(1500)
    assert c["overhead_ms_per_stream_mean"] == pytest.approx(1000)
    assert c["overhead_ms_per_stream_max"] == pytest.approx(1500)
    assert c["overhead_ratio"] == pytest.approx(4.0 / 3.0)  # mean 4 s on Ray, 3 s locally
    assert c["rest_overhead_ms_per_stream_mean"] == pytest.approx(625)
    assert c["wall_clock_s"] == {"local": 10.0, "ray": 13.0}
    assert c["stream_s_mean"] == {"local": 3.0, "ray": 4.0}
    assert c["stream_s_max"] == {"local": 4.0, "ray": 5.5}
    assert c["daemon_cpu_ms_per_stream"] == {"local": 30.0, "ray": 20.0}


def test_only_streams_of_both_runs_are_paired() -> None:
    ray = figures(13.0, 20.0, a=stream(2.5, 0.75), c=stream(9.0, 9.0))
    c = compare_runs(LOCAL, ray)
    assert c["streams"] == 1 and list(c["per_stream"]) == ["a"]
    with pytest.raises(ValueError):
        compare_runs(LOCAL, figures(1.0, 1.0, z=stream(1.0, 0.0)))


def test_nodes_come_from_the_streams_worktree_records() -> None:
    task = {
        "streams": [
            {"id": "a", "parent": None, "code": {"worktree": "ray://n1/tmp/tierd-ray/t/a"}},
            {"id": "b", "parent": None, "code": {"worktree": "ray://n2/tmp/tierd-ray/t/b"}},
            {"id": "b.1", "parent": "b", "code": {"worktree": "ray://n3/x"}},
            {"id": "c", "parent": None, "code": {"worktree": "/home/u/.tierd/worktrees/c"}},
            {"id": "d", "parent": None, "code": None},
        ]
    }
    assert stream_nodes(task) == {"a": "n1", "b": "n2"}


def test_the_table_prints_the_comparison_and_a_run_not_done_says_why() -> None:
    ray = {
        "name": "code-ray",
        "cluster": {"worker_nodes": 3, "cpus_per_node": 2, "start_s": 9.0},
        "warm_up_s": 5.0,
        "nodes": {"distinct": 3, "per_stream": {}},
        "same_tree_as_local": True,
        "ray_driver_cpu_ms_per_stream": 12.0,
        "comparison": compare_runs(LOCAL, RAY),
        "result": {"streams_merged": {"a": True, "b": True}, "tests_exit_code": 0},
    }
    out = io.StringIO()
    Console(file=out, width=200).print(code_ray_table({"code_ray": ray}))
    text = out.getvalue()
    assert "3-node local Ray cluster vs local" in text
    assert "+1000 / +1500" in text and "1.33x" in text
    assert "3 distinct node(s) of 3" in text and "local run's: yes" in text

    not_run = {"code_ray": {"name": "code-ray", "not_run": "install 'tierd[ray]'"}}
    assert code_ray_table(not_run) is None
    assert code_ray_caption({"code_ray": ray}) is None
    report = {
        **not_run,
        "mode": "quick",
        "settings": {"executor_latency_s": [1, 4], "premium_latency_s": [2, 6]}
        | {"latency_scale": 0.035, "ceiling": 20},
        "workloads": [],
        "machine": {"cpu_count": 2, "memory_gib": 1.0, "python": "3", "platform": "x"},
        "duration_s": 1.0,
    }
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    # The caption wraps at the table's width; "[ray]" is printed, not taken for markup.
    assert "code-ray: not run: install 'tierd[ray]'" in " ".join(out.getvalue().split())


async def test_without_ray_or_the_local_run_it_is_not_run_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    session: Any = SimpleNamespace(log=lines.append)

    async def idle(_: Any) -> float:
        return 0.0

    skipped = await run_code_ray(session, tmp_path, None, idle)
    assert skipped["name"] == "code-ray" and "--skip code" in skipped["not_run"]
    local_not_run = await run_code_ray(session, tmp_path, {"not_run": "no bwrap"}, idle)
    assert local_not_run["not_run"].endswith("no bwrap")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        code_ray.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ray" else real_find_spec(name, *a),
    )
    no_ray = await run_code_ray(session, tmp_path, LOCAL, idle)
    assert "install 'tierd[ray]'" in no_ray["not_run"]
    assert len(lines) == 3 and all("code-ray: not run" in line for line in lines)
