"""What `tierd bench` prints: the targets it checks and the rich tables.

The targets are reported, never asserted: `evaluate_targets` says for each one whether this
run met it and with what figure, and the bench exits 0 either way.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from daemon.tools.bench.code_report import (
    code_caption,
    code_execution_row,
    code_tables,
    code_usage_row,
)

#: tierd's execution phase on the skewed DAG within this fraction of the physical bound.
BOUND_TOLERANCE = 0.05
#: tierd's tokens within this fraction of the sequential agent's, beside orchestration.
TOKEN_TOLERANCE = 0.10
#: Tiered cost below this fraction of the same tokens on the premium model.
COST_FRACTION = 1 / 3
#: Daemon CPU per stream, in milliseconds.
CPU_MS_PER_STREAM = 2.0


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in report["workloads"]}


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target: name, met (bool or None when it could not be measured), figure.

    A run limited to some workloads (`only`) leaves out the targets of the others.
    """
    w = _by_name(report)
    only = set(report.get("only") or ())
    targets: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, measured: str) -> None:
        targets.append({"target": name, "met": met, "measured": measured})

    dag = w.get("dag")
    if dag and dag.get("tierd_s") and dag.get("bound_s"):
        over = dag["tierd_s"] / dag["bound_s"] - 1
        add(
            "dag: execution phase within 5% of the bound",
            over <= BOUND_TOLERANCE,
            f"{dag['tierd_s']:.2f}s vs bound {dag['bound_s']:.2f}s ({over:+.1%})",
        )
        add(
            "dag: ahead of LangGraph Send level by level",
            dag["tierd_s"] < dag["langgraph_s"],
            f"{dag['tierd_s']:.2f}s vs {dag['langgraph_s']:.2f}s",
        )
    elif not only or "dag" in only:
        add("dag: execution phase within 5% of the bound", None, "not measured")
        add("dag: ahead of LangGraph Send level by level", None, "not measured")
    for name, wl in w.items():
        t = wl.get("token_check") or {}
        if not t:
            continue
        add(
            f"{name}: tokens within 10% of sequential + orchestration",
            abs(t["deviation"]) <= TOKEN_TOLERANCE,
            f"{wl['tokens']} vs {wl['sequential_tokens']} + {wl['orchestration_tokens']} "
            f"orchestration ({t['deviation']:+.1%} of sequential)",
        )
    for name in ("wide", "dag"):
        costed = w.get(name)
        if costed and costed.get("premium_only_cost_usd"):
            ratio = costed["cost_usd"] / costed["premium_only_cost_usd"]
            add(
                f"{name}: tiered cost under 1/3 of premium-only",
                ratio < COST_FRACTION,
                f"${costed['cost_usd']:.4f} vs ${costed['premium_only_cost_usd']:.4f} "
                f"({ratio:.2f}x)",
            )
    overhead = report.get("overhead", {})
    cpu = overhead.get("daemon_cpu_ms_per_stream")
    if cpu is not None or not only:
        add(
            "daemon CPU under 2 ms per stream",
            None if cpu is None else cpu < CPU_MS_PER_STREAM,
            "not measured" if cpu is None else f"{cpu:.1f} ms per stream (all workloads)",
        )
    scale = report.get("scale", {})
    if scale:
        errors = scale.get("errors", 0)
        add(
            f"no errors at {scale.get('tasks')}x{scale.get('streams_per_task')}",
            errors == 0,
            f"{errors} error(s), {scale.get('completed')} completed",
        )
    return targets


def _s(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _execution_table(report: dict[str, Any]) -> Table:
    settings = report["settings"]
    title = (
        f"tierd bench ({report['mode']}): execution phase; latencies (executor "
        f"{settings['executor_latency_s']} s, premium {settings['premium_latency_s']} s) "
        f"x {settings['latency_scale']:g}, ceiling {settings['ceiling']}"
    )
    t = Table(
        title=title, title_justify="left", caption=code_caption(report), caption_justify="left"
    )
    for col in (
        "workload",
        "streams",
        "tierd s",
        "bound s",
        "LangGraph s",
        "sequential s",
        "plan/review/merge s",
    ):
        t.add_column(col, justify="left" if col == "workload" else "right")
    for wl in report["workloads"]:
        over = wl["tierd_s"] / wl["bound_s"] - 1 if wl.get("bound_s") else None
        t.add_row(
            wl["name"],
            str(wl["streams"]),
            _s(wl["tierd_s"]),
            _s(wl["bound_s"]) + (f" ({over:+.0%})" if over is not None else ""),
            _s(wl["langgraph_s"]),
            _s(wl["sequential_s"]),
            f"{_s(wl['planning_s'], 1)}/{_s(wl['review_s'], 1)}/{_s(wl['merge_s'], 1)}",
        )
    code = code_execution_row(report)
    if code is not None:
        t.add_row(*code)
    return t


def _usage_table(report: dict[str, Any]) -> Table:
    u = Table(title="tokens, cost and daemon CPU per workload", title_justify="left")
    for col in (
        "workload",
        "tokens",
        "sequential",
        "plan/review/merge share",
        "cost $",
        "premium-only $",
        "CPU ms/stream",
    ):
        u.add_column(col, justify="left" if col == "workload" else "right")
    for wl in report["workloads"]:
        u.add_row(
            wl["name"],
            str(wl["tokens"]),
            str(wl["sequential_tokens"]),
            f"{wl['planner_share']:.0%}/{wl['review_share']:.0%}/{wl['merge_share']:.0%}",
            f"{wl['cost_usd']:.4f}",
            f"{wl['premium_only_cost_usd']:.4f}",
            _s(wl["daemon_cpu_ms_per_stream"], 1),
        )
    code = code_usage_row(report)
    if code is not None:
        u.add_row(*code)
    return u


Rows = list[tuple[str, str]]


def _overhead_rows(report: dict[str, Any]) -> Rows:
    ov = report.get("overhead", {})
    first = report.get("api", {}).get("submit_to_first_call_ms", {})
    if not ov and not first:
        return []
    return [
        (
            "daemon CPU per stream, all workloads (excl. litellm client est.)",
            f"{_s(ov.get('daemon_cpu_ms_per_stream'), 1)} ms "
            f"({_s(ov.get('daemon_cpu_ms_per_stream_excl_client'), 1)} ms)",
        ),
        (
            "litellm client CPU per call (bench process)",
            f"{_s(ov.get('client_cpu_ms_per_call'), 1)} ms",
        ),
        (
            f"task/submit -> first model call, p50 / p99 (n={first.get('n')})",
            f"{_s(first.get('p50'), 1)} / {_s(first.get('p99'), 1)} ms",
        ),
    ]


def _api_rows(report: dict[str, Any]) -> Rows:
    api = report.get("api", {})
    rows: Rows = []
    get = api.get("task_get", {})
    if get:
        rows.append(
            (
                f"task/get, {get['clients']} clients: throughput, p50 / p99",
                f"{get['requests_per_s']:.0f}/s, {get['p50_ms']:.1f} / {get['p99_ms']:.1f} ms",
            )
        )
    status = api.get("status_startup", {})
    if status:
        rows.append(
            (
                f"`tierd status` start-up, median of {status['runs']}",
                f"{status['median_s'] * 1000:.0f} ms",
            )
        )
    return rows


def _scale_rows(report: dict[str, Any]) -> Rows:
    scale = report.get("scale", {})
    if not scale:
        return []
    return [
        (
            f"{scale['tasks']} tasks x {scale['streams_per_task']} streams at once, ceiling "
            f"{scale['ceiling']}: throughput",
            f"{scale['tasks_per_s']:.2f} tasks/s",
        ),
        (
            "  submit latency p50 / p99",
            f"{scale['submit_p50_ms']:.0f} / {scale['submit_p99_ms']:.0f} ms",
        ),
        ("  daemon peak RSS", f"{scale['peak_rss_mib']:.0f} MiB"),
        ("  daemon CPU per stream", f"{scale['daemon_cpu_ms_per_stream']:.1f} ms"),
        ("  errors", str(scale["errors"])),
    ]


def _governor_rows(report: dict[str, Any]) -> Rows:
    gov = report.get("governor", {})
    if not gov:
        return []
    react = gov["reaction_ms"]
    return [
        (
            f"governor reaction (interval {gov['interval_ms']} ms), mean / max",
            f"{react['mean']:.0f} / {react['max']:.0f} ms",
        ),
        (
            "governor tick CPU (real psutil reading), mean",
            f"{gov['tick_cpu_ms']['mean']:.2f} ms = {gov['cpu_share_of_core']:.2%} of a core",
        ),
    ]


def _once_table(report: dict[str, Any]) -> Table:
    o = Table(title="once per run", title_justify="left", show_header=True)
    o.add_column("measure")
    o.add_column("value", justify="right")
    for rows in (_overhead_rows, _api_rows, _scale_rows, _governor_rows):
        for k, v in rows(report):
            o.add_row(k, v)
    return o


def _targets_table(report: dict[str, Any]) -> Table:
    g = Table(title="targets (reported, not asserted)", title_justify="left")
    g.add_column("target")
    g.add_column("met")
    g.add_column("measured")
    for tg in report.get("targets", []):
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[tg["met"]]
        g.add_row(tg["target"], met, tg["measured"])
    return g


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """The bench's tables: execution, usage, once-per-run figures, targets; the machine."""
    console = console or Console()
    console.print(_execution_table(report))
    console.print(_usage_table(report))
    for table in code_tables(report):
        console.print(table)
    if report.get("api") or report.get("overhead"):
        console.print(_once_table(report))
    if report.get("targets"):
        console.print(_targets_table(report))
    m = report["machine"]
    console.print(
        f"machine: {m['cpu_count']} CPUs, {m['memory_gib']:.1f} GiB, "
        f"Python {m['python']}, {m['platform']}; run took {report['duration_s']:.0f} s"
    )
