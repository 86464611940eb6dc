"""`tierd bench`'s code workload: 8 code streams on a generated repository, through a real
daemon on the simulator, real git, pytest under bubblewrap; then the git and sandbox replay
with tierd's own classes.

The workload runs in-process (`run` with `only=("code",)`, at a tiny scale) with its
repository under the test's directory, so the test checks the repository itself: the result
branch holds every stream's file as the stream wrote it, and the bench's replay left no
worktree or branch behind. Figures are checked for structure and positivity, never timing.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from support.git import run_git

from daemon.tools.bench.code_overhead import OPERATIONS
from daemon.tools.bench.code_repo import NEW_FILES
from daemon.tools.bench.report import evaluate_targets, print_report
from daemon.tools.bench.run import run, run_bench
from daemon.tools.bench.workloads import BenchSettings
from daemon.tools.simulator import load_scenario

STREAMS = ["tests", "slug", "roman", "wrap", "stats", "units", "index", "table"]
#: What each stream writes (the scenario's scripts).
WRITES = {
    "tests": [f for f in NEW_FILES if f.startswith("tests/")],
    **{sid: [f"kit/{sid}.py"] for sid in STREAMS[1:]},
}
POSITIVE = (
    "tierd_s",
    "bound_s",
    "critical_path_s",
    "total_work_s",
    "sequential_sum_s",
    "planning_s",
    "merge_s",
    "final_tests_s",
    "model_s",
    "commands_s",
    "test_runs_s",
    "tokens",
    "executor_tokens",
    "orchestration_tokens",
    "cost_usd",
    "premium_only_cost_usd",
    "submit_to_first_call_ms",
    "calls",
    "tool_calls",
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap is not installed (no 'bwrap' on PATH): the code workload needs the "
            "package 'bubblewrap' (apt-get install -y bubblewrap)"
        )
    where = tmp_path_factory.mktemp("bench-code")
    settings = dataclasses.replace(
        BenchSettings.for_mode(quick=True),
        only=("code",),
        latency_scale=0.01,
        code_files=20,
        code_rounds=2,
        code_starts=2,
        code_dir=str(where),
    )
    lines: list[str] = []
    report = run(settings, lines.append)
    return report, where / "kit"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_code_workload_runs_and_reports_every_figure(
    bench: tuple[dict[str, Any], Path],
) -> None:
    report, _repo = bench
    assert report["only"] == ["code"] and report["workloads"] == []
    assert "api" not in report and "scale" not in report  # --only skips the once-per-run part
    code = report["code"]
    assert "not_run" not in code, code.get("not_run")
    assert code["streams"] == 8 and code["levels"] == 3
    for key in POSITIVE:
        assert code[key] > 0, (key, code[key])
    # No peer baseline for code: said, not faked.
    assert code["sequential_s"] is None and code["langgraph_s"] is None
    assert code["sequential_tokens"] is None and "baseline" in code["baselines"]
    assert code["premium_only_cost_usd"] > code["cost_usd"]
    assert code["critical_path_s"] <= code["total_work_s"]
    per = code["per_stream"]
    assert list(per) == STREAMS
    assert per["index"]["depends_on"] == ["slug", "roman"]
    assert per["table"]["depends_on"] == ["stats", "units"]
    for sid, f in per.items():
        assert f["verdict"] == "accept" and f["rounds"] == 1, (sid, f)
        assert sorted(f["files"]) == sorted(WRITES[sid]), sid
        for key in ("stream_s", "model_s", "commands_s", "test_run_s", "work_s"):
            assert f[key] > 0, (sid, key, f[key])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_overhead_of_git_and_the_sandbox_per_stream(
    bench: tuple[dict[str, Any], Path],
) -> None:
    ov = bench[0]["code"]["overhead"]
    assert ov["rounds"] == 2 and ov["starts_per_stream"] == 2 and ov["sandbox"] == "bwrap"
    ops = ov["operations"]
    assert set(ops) == {*OPERATIONS, "task_cleanup"}
    for op, fig in ops.items():
        n = 2 if op == "task_cleanup" else 8 * 2 * (2 if op.endswith("_start") else 1)
        assert fig["n"] == n, (op, fig)
        assert 0 < fig["p50_ms"] <= fig["max_ms"] and 0 < fig["mean_ms"] <= fig["max_ms"], op
    assert list(ov["per_stream"]) == STREAMS
    for sid, per in ov["per_stream"].items():
        for op in OPERATIONS:
            n = 2 * (2 if op.endswith("_start") else 1)
            assert per[op]["n"] == n and 0 < per[op]["p50_ms"] <= per[op]["max_ms"], (sid, op)
    assert isinstance(ov["sandbox_extra_ms_p50"], float)
    # The replay merged the same trees the daemon did.
    assert ov["merged_tree_matches_daemon"] is True
    assert ov["merged_tree"] == ov["daemon_tree"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_streams_really_merged(bench: tuple[dict[str, Any], Path]) -> None:
    report, repo = bench
    result = report["code"]["result"]
    assert result["all_merged"] and result["new_files_present"] and not result["not_merged"]
    assert result["tests_exit_code"] == 0
    branch = result["branch"]
    assert branch == f"tierd/{report['code']['task_id']}/_result"
    # The repository itself: the result branch holds every stream's file as its script wrote it.
    tree = set(run_git(repo, "ls-tree", "-r", "--name-only", branch).split())
    scripts = load_scenario("bench_code").code.streams
    for sid, files in WRITES.items():
        written = {
            step.args["path"]: step.args["content"]
            for answer in scripts[sid]
            for step in answer.tool_steps()
            if step.tool == "write_file"
        }
        assert set(files) <= tree, (sid, set(files) - tree)
        for path in files:
            assert run_git(repo, "show", f"{branch}:{path}") == written[path], (sid, path)
    # The user's branch is untouched, and the bench's replay left nothing behind: one
    # worktree (the repository's own), one tierd branch (the result the task keeps).
    assert run_git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert not (set(NEW_FILES) & set(run_git(repo, "ls-tree", "-r", "--name-only", "main").split()))
    worktrees = [ln for ln in run_git(repo, "worktree", "list", "--porcelain").splitlines()]
    assert sum(ln.startswith("worktree ") for ln in worktrees) == 1
    assert run_git(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split() == [
        branch
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_tables_show_the_code_row_beside_the_others(
    bench: tuple[dict[str, Any], Path],
) -> None:
    out = io.StringIO()
    print_report({**bench[0], "targets": []}, Console(file=out, width=200))
    text = out.getvalue()
    row = next(ln for ln in text.splitlines() if ln.startswith("│ code "))
    assert "n/a" in row and "(sum)" in row
    assert "no peer baseline" in text
    assert "worktree add" in text and "sandboxed /bin/true" in text


def test_a_code_workload_that_could_not_run_says_why() -> None:
    report = {
        "mode": "quick",
        "settings": {
            "executor_latency_s": [1.0, 4.0],
            "premium_latency_s": [2.0, 6.0],
            "latency_scale": 0.035,
            "ceiling": 20,
        },
        "workloads": [],
        "code": {"name": "code", "not_run": "needs the package 'bubblewrap'"},
        "targets": [],
        "machine": {"cpu_count": 2, "memory_gib": 1.0, "python": "3", "platform": "x"},
        "duration_s": 1.0,
    }
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    assert "code: not run: needs the package 'bubblewrap'" in out.getvalue()


def test_a_run_of_some_workloads_leaves_out_the_targets_of_the_others() -> None:
    assert evaluate_targets({"only": ["code"], "workloads": []}) == []
    names = [t["target"] for t in evaluate_targets({"workloads": []})]
    assert "dag: execution phase within 5% of the bound" in names  # a full run: not measured
    assert "daemon CPU <= 5 ms per stream, without litellm's client" in names


def test_an_unknown_workload_is_refused_before_anything_runs() -> None:
    assert run_bench(quick=True, json_path=None, only=["code", "nope"]) == 2
