"""What `tierd bench` prints of the code workload: its rows in the shared tables (with `n/a`
where a peer baseline does not apply), where each stream's time went, the git and sandbox
overhead per stream and per operation, and its run on a local Ray cluster beside the local
one."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from daemon.tools.bench.code_overhead import OPERATIONS

__all__ = [
    "code_caption",
    "code_execution_row",
    "code_ray_caption",
    "code_ray_table",
    "code_tables",
    "code_usage_row",
]

NA = "n/a"
_OP_TITLES = {
    "start_commit": "start (deps merged)",
    "worktree_add": "worktree add",
    "commit": "commit",
    "sandbox_start": "sandboxed /bin/true",
    "plain_start": "plain /bin/true",
    "merge": "merge",
    "worktree_remove": "worktree remove",
}


def _s(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ran(report: dict[str, Any]) -> dict[str, Any] | None:
    code = report.get("code")
    return code if code and "not_run" not in code else None


def code_execution_row(report: dict[str, Any]) -> list[str] | None:
    """The code workload's row of the execution table (the same columns as the others)."""
    code = _ran(report)
    if code is None:
        return None
    over = code["tierd_s"] / code["bound_s"] - 1 if code.get("bound_s") else None
    return [
        code["name"],
        str(code["streams"]),
        _s(code["tierd_s"]),
        _s(code["bound_s"]) + (f" ({over:+.0%})" if over is not None else ""),
        NA,
        f"{_s(code['sequential_sum_s'])} (sum)",
        f"{_s(code['planning_s'], 1)}/-/{_s(code['merge_s'], 1)}",
    ]


def code_usage_row(report: dict[str, Any]) -> list[str] | None:
    """The code workload's row of the tokens and cost table."""
    code = _ran(report)
    if code is None:
        return None
    return [
        code["name"],
        str(code["tokens"]),
        NA,
        f"{code['planner_share']:.0%}/{code['review_share']:.0%}/{code['merge_share']:.0%}",
        f"{code['cost_usd']:.4f}",
        f"{code['premium_only_cost_usd']:.4f}",
        _s(code["daemon_cpu_ms_per_stream"], 1),
    ]


def code_caption(report: dict[str, Any]) -> str | None:
    """Why the code row has no peer baselines, or why the code workload did not run."""
    code = report.get("code")
    if not code:
        return None
    if "not_run" in code:
        return f"code: not run: {code['not_run']}"
    return f"code: {code['baselines']}"


def _time_table(code: dict[str, Any]) -> Table:
    t = Table(
        title="code workload: where each stream's time went (s), from the daemon's records",
        title_justify="left",
        caption="model: the simulated latency of its calls; commands: what the executor ran "
        "(the tests, in the sandbox); test run: tierd's own run after the round; rest: tierd's "
        "machinery (worktree, commits, diffs, saved steps, prompts) and the model calls' own "
        "cost beyond the simulated latency (litellm, HTTP, the simulator)",
        caption_justify="left",
    )
    for col in ("stream", "depends on", "stream", "model", "commands", "test run", "rest"):
        t.add_column(col, justify="left" if col in ("stream", "depends on") else "right")
    for sid, f in code["per_stream"].items():
        t.add_row(
            sid,
            ", ".join(f["depends_on"]) or "-",
            _s(f["stream_s"]),
            _s(f["model_s"]),
            _s(f["commands_s"]),
            _s(f["test_run_s"]),
            _s(f["other_s"]),
        )
    t.add_row(
        "all",
        "",
        _s(code["sequential_sum_s"]),
        _s(code["model_s"]),
        _s(code["commands_s"]),
        _s(code["test_runs_s"]),
        _s(code["other_s"]),
        style="bold",
    )
    return t


def _overhead_table(code: dict[str, Any]) -> Table:
    ov, result = code["overhead"], code["result"]
    ops = ov["operations"]
    merged = sum(result["streams_merged"].values())
    t = Table(
        title=f"code workload: git and sandbox per stream (ms), replayed with tierd's own "
        f"classes: {ov['rounds']} round(s), {ov['starts_per_stream']} start(s) per mode",
        title_justify="left",
        caption=(
            f"the sandbox adds {ov['sandbox_extra_ms_p50']:.1f} ms to a trivial command (p50); "
            f"task clean-up (remove_task, once per round) {ops['task_cleanup']['mean_ms']:.0f} "
            f"ms; replayed merge equals the daemon's result: "
            f"{'yes' if ov['merged_tree_matches_daemon'] else 'NO'}; {merged}/"
            f"{len(result['streams_merged'])} streams' files on {result['branch']}, its tests "
            f"exit {result['tests_exit_code']}"
        ),
        caption_justify="left",
    )
    t.add_column("stream")
    for op in OPERATIONS:
        t.add_column(_OP_TITLES[op], justify="right")
    for sid, per in ov["per_stream"].items():
        t.add_row(sid, *(_s(per[op]["mean_ms"], 1) for op in OPERATIONS))
    for stat in ("mean", "p50", "max"):
        t.add_row(stat, *(_s(ops[op][f"{stat}_ms"], 1) for op in OPERATIONS), style="bold")
    return t


def code_tables(report: dict[str, Any]) -> list[Table]:
    """The code workload's own tables (none when it did not run)."""
    code = _ran(report)
    if code is None:
        return []
    return [_time_table(code), _overhead_table(code)]


def code_ray_caption(report: dict[str, Any]) -> str | None:
    """Why the code workload was not run on Ray, or None."""
    ray = report.get("code_ray")
    if not ray or "not_run" not in ray:
        return None
    # Escaped: the reason names the extra 'tierd[ray]', which rich would take for markup.
    return escape(f"code-ray: not run: {ray['not_run']}")


def _pair_row(label: str, pair: dict[str, Any], scale: float, digits: int) -> list[str]:
    local, ray = pair["local"], pair["ray"]
    if local is None or ray is None:
        return [label, _s(local, digits), _s(ray, digits), "-", "-"]
    ratio = f"{ray / local:.2f}x" if local else "-"
    return [
        label,
        _s(local * scale, digits),
        _s(ray * scale, digits),
        f"{(ray - local) * scale:+.{digits}f}",
        ratio,
    ]


def code_ray_table(report: dict[str, Any]) -> Table | None:
    """The code workload on a local Ray cluster beside the local backend (None: not run)."""
    ray = report.get("code_ray")
    if not ray or "not_run" in ray:
        return None
    c, cluster, result = ray["comparison"], ray["cluster"], ray["result"]
    merged = sum(result["streams_merged"].values())
    t = Table(
        title=f"code workload on a {cluster['worker_nodes']}-node local Ray cluster vs local "
        f"({c['streams']} streams, {cluster['cpus_per_node']} CPUs per node)",
        title_justify="left",
        caption=(
            f"streams ran on {ray['nodes']['distinct']} distinct node(s) of "
            f"{cluster['worker_nodes']}; merged tree equals the local run's: "
            f"{'yes' if ray['same_tree_as_local'] else 'NO'}; {merged}/"
            f"{len(result['streams_merged'])} streams' files merged, tests exit "
            f"{result['tests_exit_code']}; cluster start {cluster['start_s']:.1f} s, warm-up "
            f"(one-stream code task, the Ray driver connects) {ray['warm_up_s']:.1f} s; "
            f"Ray driver CPU per stream {_s(ray['ray_driver_cpu_ms_per_stream'], 1)} ms; "
            "rest: a stream's time beyond its model calls, commands and test run"
        ),
        caption_justify="left",
    )
    for col in ("figure", "local", "ray", "ray - local", "ray / local"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    rows = (
        ("wall clock (s)", "wall_clock_s", 1.0, 2),
        ("execution phase (s)", "tierd_s", 1.0, 2),
        ("per-stream time, mean (ms)", "stream_s_mean", 1000.0, 0),
        ("per-stream time, max (ms)", "stream_s_max", 1000.0, 0),
        ("per-stream rest, mean (ms)", "rest_s_mean", 1000.0, 0),
        ("daemon CPU per stream (ms)", "daemon_cpu_ms_per_stream", 1.0, 1),
    )
    for label, key, scale, digits in rows:
        t.add_row(*_pair_row(label, c[key], scale, digits))
    t.add_row(
        "per-stream overhead, mean / max over streams (ms)",
        "",
        "",
        f"{c['overhead_ms_per_stream_mean']:+.0f} / {c['overhead_ms_per_stream_max']:+.0f}",
        _s(c["overhead_ratio"]) + "x" if c["overhead_ratio"] is not None else "-",
        style="bold",
    )
    return t
