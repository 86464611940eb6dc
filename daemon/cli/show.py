"""`tierd show`: a finished (or waiting) task in the terminal: its streams and verdicts, a
code task's repository and worktree facts, open questions, the human's decisions, the result
and the report; time waited for the human apart from the work.

Everything shown comes from the daemon and may hold a model's or a stranger's text: it passes
through `terminal.clean` before rich sees it, and goes to rich as `Text` (never markup).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from daemon.cli.code_views import print_code, print_repo
from daemon.cli.style import ROLES, STYLE, fmt_s, fmt_tokens, fmt_usd
from daemon.cli.terminal import clean, clean_data
from daemon.cli.terminal import console as safe_console

__all__ = [
    "print_decisions",
    "print_report_summary",
    "print_streams",
    "print_task",
    "report_lines",
    "result_markdown",
]


TERMINAL = frozenset({"completed", "failed", "canceled"})


def print_task(
    task: dict[str, Any],
    console: Console | None = None,
    *,
    result: bool = True,
    decisions: list[dict[str, Any]] | None = None,
) -> None:
    """`tierd show`: the task, its streams and verdicts, open questions, the human's
    decisions on its result (`task.decision` events), result and report. Its text is
    neutralised first (`terminal.clean`): it holds goals and model output. Hints to act
    (answer, approve) only while they apply."""
    console = console or safe_console()
    task = clean_data(task)
    ended = task["state"] in TERMINAL
    console.print(
        Text.assemble(
            ("task ", "bold"),
            (task["id"], "bold"),
            "  ",
            (task["state"], STYLE.get(task["state"], "")),
        )
    )
    console.print(Text(f"goal: {task['goal']}"))
    print_repo(task, console)
    plan = task.get("plan") or {}
    if plan.get("summary"):
        console.print(Text(f"plan: {plan['summary']}", style="dim"))
    print_streams(task, console)
    print_code(task, console)
    open_q = [q for q in task.get("questions", []) if q.get("answer") is None]
    for q in open_q:
        console.print(
            Text.assemble(
                (f"question {q['id']}", "magenta"),
                f" ({q['stream_id']}): {q['question']}",
                (" (never answered)", "dim") if ended else "",
            )
        )
        if not ended:
            console.print(
                Text(f'  answer with: tierd answer {task["id"]} {q["id"]} "..."', style="dim")
            )
    print_decisions(clean_data(decisions or []), console)
    if task["state"] == "awaiting_approval":
        console.print(
            Text(
                f'waiting for approval: tierd approve {task["id"]} (or --reject --comment "...")',
                style="magenta",
            )
        )
    if result and task.get("result"):
        console.print(Panel(result_markdown(task["result"]), title="result", title_align="left"))
    if task.get("error"):
        console.print(Text.assemble(("error: ", "red"), task["error"]))
    if task.get("report"):
        print_report_summary(task["report"], console)


def print_decisions(decisions: list[dict[str, Any]], console: Console) -> None:
    """The human's decisions on the result, each rejection with its comment."""
    for d in decisions:
        revision = d.get("revision", "?")
        if d.get("decision") == "reject":
            comment = str(d.get("comment") or "").strip() or "(no comment)"
            console.print(Text.assemble((f"rejected revision {revision}: ", "yellow"), comment))
        elif d.get("decision") == "approve":
            console.print(Text(f"approved revision {revision}", style="green"))


def result_markdown(text: str) -> Markdown:
    """A task's result as Markdown: neutralised, and its links shown as text and URL rather
    than as terminal hyperlinks whose target the user cannot see."""
    return Markdown(clean(text), hyperlinks=False)


def print_streams(task: dict[str, Any], console: Console) -> None:
    streams = clean_data(task.get("streams") or [])
    if not streams:
        return
    # Work time and waits for the human as the report has them, once there is one.
    reported = {r.get("id"): r for r in ((task.get("report") or {}).get("streams") or [])}
    waits = any((r.get("waited_s") or 0) >= 0.05 for r in reported.values())
    table = Table("stream", "state", "verdict", "rounds", "time", box=None, header_style="dim")
    if waits:
        table.add_column("waited")
    table.add_column("reason")
    for s in streams:
        took, waited = "", ""
        r = reported.get(s["id"]) or {}
        if r.get("duration_s") is not None and s.get("started_at"):
            took = fmt_s(r["duration_s"])
            waited = fmt_s(r["waited_s"]) if (r.get("waited_s") or 0) >= 0.05 else ""
        elif s.get("started_at") and s.get("ended_at"):
            took = fmt_s(s["ended_at"] - s["started_at"])
        indent = "  " * int(s.get("depth") or 0)
        table.add_row(
            Text(indent + s["id"]),
            Text(s["state"], style=STYLE.get(s["state"], "")),
            Text(s.get("verdict") or "", style=STYLE.get(s.get("verdict") or "", "")),
            str(s.get("rounds", 0)),
            took,
            *([Text(waited, style="magenta")] if waits else []),
            Text((s.get("reason") or ""), overflow="ellipsis", no_wrap=True),
        )
    console.print(table)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report's time and cost in plain sentences (shared by `show` and the demo)."""
    t, c = report.get("time") or {}, report.get("cost") or {}
    lines = []
    execution, sequential = t.get("execution_s", 0.0), t.get("sequential_s", 0.0)
    wall, waited = t.get("wall_clock_s", 0.0), t.get("human_wait_s") or 0.0
    whole = f"{wall:.1f}s"
    if waited >= 0.05:
        whole = f"{t.get('work_s', wall - waited):.1f}s of work and {waited:.1f}s waiting for you"
    if sequential:
        speedup = f" ({sequential / execution:.1f}x faster)" if execution else ""
        lines.append(
            f"time: the streams ran in {execution:.1f}s of wall-clock time against "
            f"{sequential:.1f}s one after another{speedup}; critical path "
            f"{t.get('critical_path_s', 0.0):.1f}s. The whole task took "
            f"{whole} with planning, review and merge."
        )
    elif t:
        lines.append(f"time: the whole task took {whole}.")
    if c:
        total, premium = c.get("total_usd"), c.get("premium_only_usd")
        saved = c.get("tiering_saved_usd")
        share = f" ({saved / premium:.0%})" if premium and saved is not None else ""
        lines.append(
            f"cost: {fmt_usd(total)}; the same tokens all on "
            f"{c.get('premium_model', 'the premium model')} would cost "
            f"{fmt_usd(premium)}: tiering saved {fmt_usd(saved)}{share}."
        )
        cached = c.get("cached_tokens") or 0
        if cached:
            lines.append(
                f"caching: {cached} prompt tokens came from the provider's prompt cache, "
                f"which saved {fmt_usd(c.get('caching_saved_usd'))}."
            )
    return lines


def print_report_summary(report: dict[str, Any], console: Console) -> None:
    report = clean_data(report)
    for line in report_lines(report):
        console.print(Text(line))
    per_role = (report.get("usage") or {}).get("per_role") or {}
    if not per_role:
        return
    settings = report.get("settings") or {}
    table = Table("role", "model", "calls", "tokens", "cost", box=None, header_style="dim")
    for col in table.columns[2:]:
        col.justify = "right"
    order = [r for r in ROLES if r in per_role] + sorted(set(per_role) - set(ROLES))
    for role in order:
        b = per_role[role]
        table.add_row(
            Text(role),
            Text(str(settings.get(f"models.{role}.model", ""))),
            str(int(b["calls"])),
            fmt_tokens(b["tokens"]),
            fmt_usd(b["cost_usd"]),
        )
    total = (report.get("usage") or {}).get("total")
    if total:
        table.add_row(
            Text("total", style="bold"),
            "",
            str(int(total["calls"])),
            fmt_tokens(total["tokens"]),
            fmt_usd(total["cost_usd"]),
        )
    console.print(table)
