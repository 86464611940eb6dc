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
    code_ray_caption,
    code_ray_table,
    code_tables,
    code_usage_row,
)

#: tierd's execution phase on the skewed DAG within this fraction of the physical bound.
BOUND_TOLERANCE = 0.05
#: At quick scale (calls of tens of milliseconds, where tierd's own overhead is on the
#: critical path): wide and DAG within this fraction of the bound.
QUICK_BOUND_TOLERANCE = 0.10
#: At full scale: tierd's execution phase at most this fraction over the LangGraph
#: functional-API peer's (start-when-ready, in process, not durable) on wide and DAG.
PEER_TOLERANCE = 0.03
#: Streams in flight at once (ceiling as many), and the daemon's peak resident memory then.
IN_FLIGHT_STREAMS = 1000
IN_FLIGHT_RSS_MIB = 400
#: tierd's tokens within this fraction of the sequential agent's, beside orchestration.
TOKEN_TOLERANCE = 0.10
#: Tiered cost below this fraction of the same tokens on the premium model.
COST_FRACTION = 1 / 3
#: Daemon CPU per stream, in milliseconds, without litellm's client (its CPU per call is
#: measured in the bench's own process and taken off per call).
CPU_MS_PER_STREAM = 5.0
#: task/submit to the first model call reaching the simulator, p50, in milliseconds.
FIRST_CALL_P50_MS = 10.0
#: task/get of one ended task: requests a second with this many clients, and its p99.
TASK_GET_PER_S = 2000
TASK_GET_CLIENTS = 50
TASK_GET_P99_MS = 50


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

    for target in _execution_targets(report, w):
        add(*target)
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
            # Both sides with the same prompt caching (see figures._cost for why).
            ratio = costed["cost_usd"] / costed["premium_only_cost_usd"]
            uncached = costed.get("uncached_cost_ratio")
            floor = costed.get("completion_floor_ratio")
            add(
                f"{name}: tiered cost under 1/3 of premium-only",
                ratio < COST_FRACTION,
                f"${costed['cost_usd']:.4f} vs ${costed['premium_only_cost_usd']:.4f} "
                f"({ratio:.2f}x; without caching {_s(uncached, 2)}x; "
                f"the completions alone {_s(floor, 2)}x)",
            )
    overhead = report.get("overhead", {})
    cpu = overhead.get("daemon_cpu_ms_per_stream_excl_client")
    if cpu is not None or not only:
        add(
            f"daemon CPU <= {CPU_MS_PER_STREAM:g} ms per stream, without litellm's client",
            None if cpu is None else cpu <= CPU_MS_PER_STREAM,
            "not measured"
            if cpu is None
            else f"{cpu:.1f} ms per stream ({overhead.get('daemon_cpu_ms_per_stream', 0):.1f} ms "
            "with it; all workloads)",
        )
    first = report.get("api", {}).get("submit_to_first_call_ms", {})
    if first.get("p50") is not None:
        add(
            f"task/submit -> first model call p50 <= {FIRST_CALL_P50_MS:g} ms",
            first["p50"] <= FIRST_CALL_P50_MS,
            f"{first['p50']:.1f} ms p50, {first.get('p99', 0):.1f} ms p99",
        )
    scale = report.get("scale", {})
    if scale:
        errors = scale.get("errors", 0)
        add(
            f"no errors at {scale.get('tasks')}x{scale.get('streams_per_task')}",
            errors == 0,
            f"{errors} error(s), {scale.get('completed')} completed",
        )
        if scale.get("in_flight"):
            add(*_in_flight_target(scale["in_flight"]))
    task_get = report.get("api", {}).get("task_get")
    if task_get:
        add(*_task_get_target(task_get))
    return targets


def _task_get_target(get: dict[str, Any]) -> tuple[str, bool, str]:
    """task/get at 2,000 requests a second with 50 clients, p99 within 50 ms, no errors."""
    target = (
        f"task/get >= {TASK_GET_PER_S:,} req/s at {TASK_GET_CLIENTS} clients, "
        f"p99 <= {TASK_GET_P99_MS} ms"
    )
    met = (
        get["clients"] >= TASK_GET_CLIENTS
        and get["requests_per_s"] >= TASK_GET_PER_S
        and get["p99_ms"] <= TASK_GET_P99_MS
        and get["errors"] == 0
    )
    measured = (
        f"{get['requests_per_s']:,.0f} req/s at {get['clients']} clients, p50 "
        f"{get['p50_ms']:.1f} / p99 {get['p99_ms']:.1f} ms, {get['errors']} error(s)"
    )
    return target, met, measured


def _in_flight_target(fl: dict[str, Any]) -> tuple[str, bool | None, str]:
    """1,000 streams in flight with the daemon's RSS under 400 MiB; unjudged (None) for a
    smaller run (`--quick`), whose figures are shown all the same."""
    target = f"{IN_FLIGHT_STREAMS:,} streams in flight with RSS <= {IN_FLIGHT_RSS_MIB} MiB"
    peak, rss = fl["peak_executor_calls_in_flight"], fl["peak_rss_mib"]
    measured = (
        f"peak {peak} of {fl['streams']} executor calls in flight (agent limit "
        f"{fl['limit_min']}..{fl['limit_max']}), RSS {rss:.0f} MiB, {fl['errors']} error(s)"
    )
    if fl["streams"] < IN_FLIGHT_STREAMS:
        return target, None, f"smaller run ({fl['streams']} streams): {measured}"
    met = peak >= IN_FLIGHT_STREAMS and rss <= IN_FLIGHT_RSS_MIB and fl["errors"] == 0
    return target, met, measured


def _execution_targets(
    report: dict[str, Any], w: dict[str, dict[str, Any]]
) -> list[tuple[str, bool | None, str]]:
    """wide and DAG against the bound and the peers; which ones depends on the run's mode.

    Quick (`--quick`): both within 10% of the bound. Full: the DAG within 5% of it, and both
    within 3% of the LangGraph functional peer. Both modes: ahead of LangGraph `Send`. A
    report without a mode is a full run's. A workload left out of the run has no rows.
    """
    quick = report.get("mode") == "quick"
    only, skipped = set(report.get("only") or ()), set(report.get("skipped") or ())
    out: list[tuple[str, bool | None, str]] = []
    for name in ("wide", "dag"):
        wl = w.get(name) or {}
        tierd, bound = wl.get("tierd_s"), wl.get("bound_s")
        if not wl and (name in skipped or (only and name not in only)):
            continue
        tolerance = QUICK_BOUND_TOLERANCE if quick else BOUND_TOLERANCE
        if quick or name == "dag":
            target = f"{name}: execution phase within {tolerance:.0%} of the bound"
            if tierd and bound:
                over = tierd / bound - 1
                measured = f"{tierd:.2f}s vs bound {bound:.2f}s ({over:+.1%})"
                out.append((target, over <= tolerance, measured))
            else:
                out.append((target, None, "not measured"))
        send = wl.get("langgraph_s")
        out.append(
            _against(f"{name}: ahead of LangGraph Send level by level", tierd, send, 0.0, True)
        )
        if not quick:
            functional = wl.get("functional_s")
            target = f"{name}: within {PEER_TOLERANCE:.0%} of LangGraph functional"
            out.append(_against(target, tierd, functional, PEER_TOLERANCE, False))
    return out


def _against(
    target: str, tierd: float | None, peer: float | None, tolerance: float, strict: bool
) -> tuple[str, bool | None, str]:
    """tierd's time against a peer's: ahead of it (`strict`), or at most `tolerance` over."""
    if not (tierd and peer):
        return target, None, "not measured"
    met = tierd < peer if strict else tierd <= (1 + tolerance) * peer
    return target, met, f"{tierd:.2f}s vs {peer:.2f}s ({tierd / peer - 1:+.1%})"


def _s(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _execution_table(report: dict[str, Any]) -> Table:
    settings = report["settings"]
    title = (
        f"tierd bench ({report['mode']}): execution phase; latencies (executor "
        f"{settings['executor_latency_s']} s, premium {settings['premium_latency_s']} s) "
        f"x {settings['latency_scale']:g}, ceiling {settings['ceiling']}"
    )
    captions = [c for c in (code_caption(report), code_ray_caption(report)) if c]
    t = Table(
        title=title,
        title_justify="left",
        caption="\n".join(captions) or None,
        caption_justify="left",
    )
    for col in (
        "workload",
        "streams",
        "tierd s",
        "bound s",
        "LangGraph Send s",
        "LangGraph functional s",
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
            _s(wl.get("functional_s")),
            _s(wl["sequential_s"]),
            f"{_s(wl['planning_s'], 1)}/{_s(wl['review_s'], 1)}/{_s(wl['merge_s'], 1)}",
        )
    code = code_execution_row(report)
    if code is not None:
        # No peer runs the code workload: its LangGraph functional cell is that of Send.
        t.add_row(*code[:5], code[4], *code[5:])
    return t


def _usage_table(report: dict[str, Any]) -> Table:
    u = Table(title="tokens, cost and daemon CPU per workload", title_justify="left")
    for col in (
        "workload",
        "tokens",
        "sequential",
        "plan/review/merge share",
        "cost $ (no cache)",
        "premium-only $ (no cache)",
        "CPU ms/stream",
    ):
        u.add_column(col, justify="left" if col == "workload" else "right")
    for wl in report["workloads"]:
        cached = wl.get("cached_tokens") or 0
        u.add_row(
            wl["name"],
            f"{wl['tokens']} ({cached} cached)" if cached else str(wl["tokens"]),
            str(wl["sequential_tokens"]),
            f"{wl['planner_share']:.0%}/{wl['review_share']:.0%}/{wl['merge_share']:.0%}",
            _with_uncached(wl["cost_usd"], wl.get("uncached_cost_usd")),
            _with_uncached(wl["premium_only_cost_usd"], wl.get("premium_only_uncached_cost_usd")),
            _s(wl["daemon_cpu_ms_per_stream"], 1),
        )
    code = code_usage_row(report)
    if code is not None:
        u.add_row(*code)
    return u


def _with_uncached(cost: float, uncached: float | None) -> str:
    """A cost with prompt caching, and in brackets the same calls without it."""
    return f"{cost:.4f}" if uncached is None else f"{cost:.4f} ({uncached:.4f})"


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
        if get.get("daemon_cpu_us_per_request") is not None:
            rows.append(("  daemon CPU per task/get", f"{get['daemon_cpu_us_per_request']:.0f} µs"))
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
        *_in_flight_rows(scale.get("in_flight") or {}),
    ]


def _in_flight_rows(fl: dict[str, Any]) -> Rows:
    if not fl:
        return []
    smaller = " (smaller run)" if fl["streams"] < IN_FLIGHT_STREAMS else ""
    return [
        (
            f"{fl['tasks']} tasks x {fl['streams_per_task']} streams in flight at once{smaller}, "
            f"ceiling {fl['ceiling']}, executor calls of {fl['executor_latency_s']:g} s: "
            "peak in flight (simulator)",
            f"{fl['peak_executor_calls_in_flight']} of {fl['streams']}",
        ),
        (
            "  daemon's agent limit: lowest / at the peak",
            f"{fl['limit_min']} / {fl['limit_at_peak']}",
        ),
        ("  executor calls started within", f"{fl['executor_start_spread_s']:.1f} s"),
        (
            "  daemon peak RSS (before)",
            f"{fl['peak_rss_mib']:.0f} MiB ({fl['rss_before_mib']:.0f} MiB)",
        ),
        ("  daemon CPU per stream", f"{fl['daemon_cpu_ms_per_stream']:.1f} ms"),
        ("  errors", str(fl["errors"])),
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
    ray = code_ray_table(report)
    if ray is not None:
        console.print(ray)
    if report.get("api") or report.get("overhead"):
        console.print(_once_table(report))
    if report.get("targets"):
        console.print(_targets_table(report))
    m = report["machine"]
    console.print(
        f"machine: {m['cpu_count']} CPUs, {m['memory_gib']:.1f} GiB, "
        f"Python {m['python']}, {m['platform']}; run took {report['duration_s']:.0f} s"
    )
