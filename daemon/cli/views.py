"""Terminal views of a task with rich: the live stream tree for `watch`, the summary for `show`.

The live view is built only from the task's event stream (replayed from the start, then
followed), so what a user sees is what any other client of the API could see. Each line of the
tree is one stream: its state, the model doing it, the tokens and dollars spent on it (its
executor calls and the orchestrator's reviews of it), how long it has run, and its verdict.
Sub-streams of a split hang under their parent.

Everything shown comes from the daemon and may hold a model's or a stranger's text: it passes
through `terminal.clean` before rich sees it, and goes to rich as `Text` (never markup).
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from daemon.cli.client import DaemonNotRunning
from daemon.cli.terminal import clean, clean_data
from daemon.cli.terminal import console as safe_console

TERMINAL_STATES = frozenset({"completed", "failed", "canceled"})
HUMAN_STATES = frozenset({"input_required", "awaiting_approval"})
STOP_STATES = TERMINAL_STATES | HUMAN_STATES
ROLES = ("planner", "orchestrator", "executor")
STYLE = {
    "queued": "dim",
    "pending": "dim",
    "planning": "cyan",
    "running": "yellow",
    "reviewing": "cyan",
    "merging": "cyan",
    "waiting": "magenta",
    "accepted": "green",
    "fixed": "green",
    "failed": "red",
    "completed": "bold green",
    "canceled": "red",
    "input_required": "bold magenta",
    "awaiting_approval": "bold magenta",
    "accept": "green",
    "fix": "green",
    "redo": "yellow",
    "escalate": "magenta",
}
MARK = {
    "pending": "·",
    "running": "▸",
    "reviewing": "◎",
    "waiting": "?",
    "accepted": "✓",
    "fixed": "✓",
    "failed": "✗",
}


def short_model(model: str) -> str:
    """'openai/gpt-5-mini' -> 'gpt-5-mini': the provider prefix is noise in a narrow column."""
    return model.rsplit("/", 1)[-1] if model else ""


def fmt_tokens(n: float) -> str:
    return f"{int(n):,}"


def fmt_usd(x: float | None) -> str:
    """Dollars; "unknown" when a model's price is not known (never $0, which reads as free)."""
    if x is None:
        return "unknown"
    return f"${x:.4f}" if x < 100 else f"${x:,.2f}"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 600 else f"{seconds / 60:.0f}m"


@dataclass
class StreamLine:
    id: str
    parent: str | None = None
    state: str = "pending"
    model: str = ""
    tokens: int = 0
    cost: float = 0.0
    verdict: str | None = None
    rounds: int = 0
    started: float | None = None
    ended: float | None = None


@dataclass
class RoleUse:
    model: str = ""
    calls: int = 0
    tokens: int = 0
    #: None once a call of a model with no known price was made.
    cost: float | None = 0.0


@dataclass
class LiveTask:
    """A task as its events describe it; `apply` each event, `render` at any time."""

    task_id: str
    goal: str = ""
    state: str = "queued"
    started: float | None = None
    ended: float | None = None
    streams: dict[str, StreamLine] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    roles: dict[str, RoleUse] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The terminal's width: the stream titles are shown from 100 columns up.
    width: int = 80
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, ev: dict[str, Any]) -> None:
        """Take in one event; its text is neutralised first (it may hold a model's output)."""
        with self._lock:
            self._apply(clean_data(ev))

    def _apply(self, ev: dict[str, Any]) -> None:
        data, kind = ev.get("data") or {}, ev.get("type")
        now = float(ev.get("created_at") or time.time())
        if self.started is None:
            self.started = now
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, data, now)

    # --- one method per event kind (see _HANDLERS) ------------------------------------------

    def _on_task_state(self, data: dict[str, Any], now: float) -> None:
        self.state = data["state"]
        self.ended = now if self.state in TERMINAL_STATES else None

    def _on_plan(self, data: dict[str, Any], now: float) -> None:
        for s in data.get("streams", []):
            self.titles[s["id"]] = s.get("title", "")
            self.streams.setdefault(s["id"], StreamLine(s["id"]))

    def _on_stream_state(self, data: dict[str, Any], now: float) -> None:
        sid = data["stream_id"]
        line = self.streams.setdefault(sid, StreamLine(sid))
        line.parent = data.get("parent", line.parent)
        line.state = data["state"]
        line.model = data.get("model") or line.model
        line.rounds = data.get("rounds", line.rounds)
        if data["state"] == "running":
            line.started = line.started or now
            line.ended = None  # a redo runs the stream again
            line.verdict = data.get("verdict")  # "redo" when sent back
        elif data["state"] in {"accepted", "fixed", "failed"}:
            line.ended = now
            line.verdict = data.get("verdict", line.verdict)

    def _on_split(self, data: dict[str, Any], now: float) -> None:
        for sid in data.get("into", []) if data.get("accepted", True) else []:
            self.streams.setdefault(sid, StreamLine(sid, parent=data["stream_id"]))

    def _on_model_call(self, data: dict[str, Any], now: float) -> None:
        role = data.get("role", "?")
        use = self.roles.setdefault(role, RoleUse())
        tokens = int(data.get("prompt_tokens", 0)) + int(data.get("completion_tokens", 0))
        priced = data.get("cost_usd") is not None
        cost = float(data.get("cost_usd") or 0.0)
        use.model = data.get("model") or use.model
        use.calls += 1
        use.tokens += tokens
        use.cost = use.cost + cost if use.cost is not None and priced else None
        sid = data.get("stream_id")
        if sid and sid in self.streams:
            self.streams[sid].tokens += tokens
            self.streams[sid].cost += cost

    def _on_verdict(self, data: dict[str, Any], now: float) -> None:
        line = self.streams.get(data.get("stream_id", ""))
        if line is not None and data.get("verdict") in {"redo", "escalate"}:
            line.verdict = data["verdict"]

    def _on_conflicts(self, data: dict[str, Any], now: float) -> None:
        for c in data.get("conflicts") or []:
            redo = ", ".join(c.get("redo") or [])
            self.notes.append(
                f"conflict: {c.get('description', '')}" + (f" -> redo {redo}" if redo else "")
            )

    def _on_question(self, data: dict[str, Any], now: float) -> None:
        self.questions[data["question_id"]] = data.get("question", "")

    def _on_answered(self, data: dict[str, Any], now: float) -> None:
        for qid in data.get("questions", []):
            self.questions.pop(qid, None)

    def _on_attention(self, data: dict[str, Any], now: float) -> None:
        if not data.get("questions"):
            self.notes.append(f"needs attention: {data.get('reason', '')}")

    # --- rendering -------------------------------------------------------------------------

    def _ordered(self) -> list[tuple[str, StreamLine]]:
        """Streams depth-first in plan order, each with its tree prefix."""
        children: dict[str | None, list[StreamLine]] = {}
        for line in self.streams.values():
            parent = line.parent if line.parent in self.streams else None
            children.setdefault(parent, []).append(line)
        out: list[tuple[str, StreamLine]] = []

        def walk(parent: str | None, indent: str) -> None:
            kids = children.get(parent, [])
            for i, line in enumerate(kids):
                last = i == len(kids) - 1
                glyph = "" if parent is None else ("└─ " if last else "├─ ")
                out.append((indent + glyph, line))
                walk(line.id, indent + ("" if parent is None else ("   " if last else "│  ")))

        walk(None, "")
        return out

    def render(self) -> RenderableType:
        with self._lock:
            return self._render()

    def _render(self) -> RenderableType:
        now = time.time()
        elapsed = ((self.ended or now) - self.started) if self.started else 0.0
        head = Text.assemble(
            ("task ", "bold"),
            (self.task_id, "bold"),
            "  ",
            (self.state, STYLE.get(self.state, "")),
            f"  {fmt_s(elapsed)}",
        )
        if self.goal:
            head.append(f"  {self.goal}", style="dim")
        head.no_wrap = True
        head.overflow = "ellipsis"
        parts: list[RenderableType] = [head]
        if self.streams:
            parts.append(self._stream_table(now))
        if self.roles:
            parts.append(self._role_table())
        for note in self.notes[-3:]:
            parts.append(Text(note, style="magenta"))
        for qid, question in self.questions.items():
            parts.append(
                Text(
                    f"question {qid}: {question}\n  answer with: tierd answer "
                    f'{self.task_id} {qid} "..."',
                    style="magenta",
                )
            )
        if self.state == "awaiting_approval":
            parts.append(
                Text(
                    f"waiting for approval: tierd approve {self.task_id} "
                    '(or --reject --comment "...")',
                    style="magenta",
                )
            )
        return Group(*parts)

    def _stream_table(self, now: float) -> Table:
        # Titles only when there is room: at 80 columns the numbers matter more.
        titles = self.width >= 100
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False, header_style="dim")
        table.add_column("stream", no_wrap=True, overflow="ellipsis")
        if titles:
            table.add_column(
                "title", no_wrap=True, overflow="ellipsis", max_width=min(40, self.width - 78)
            )
        table.add_column("state", no_wrap=True)
        table.add_column("model", no_wrap=True, overflow="ellipsis")
        table.add_column("tokens", justify="right", no_wrap=True)
        table.add_column("cost", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        for prefix, line in self._ordered():
            took = fmt_s((line.ended or now) - line.started) if line.started else ""
            style = STYLE.get(line.state, "")
            cells: list[RenderableType | str] = [
                Text.assemble(prefix, (MARK.get(line.state, " ") + " ", style), (line.id, "bold"))
            ]
            if titles:
                cells.append(Text(self.titles.get(line.id, "")))
            cells += [
                Text(line.state, style=style),
                Text(short_model(line.model), style="dim"),
                fmt_tokens(line.tokens) if line.tokens else "",
                fmt_usd(line.cost) if line.cost else "",
                took,
                Text(line.verdict or "", style=STYLE.get(line.verdict or "", "")),
            ]
            table.add_row(*cells)
        return table

    def _role_table(self) -> Table:
        table = Table(
            box=None,
            padding=(0, 1),
            show_edge=False,
            pad_edge=False,
            show_header=False,
            style="dim",
        )
        table.add_column(style="dim")
        table.add_column(style="dim")
        for _ in range(3):
            table.add_column(justify="right", style="dim")
        total = RoleUse()
        for role in [*ROLES, *sorted(set(self.roles) - set(ROLES))]:
            use = self.roles.get(role)
            if use is None:
                continue
            total.calls += use.calls
            total.tokens += use.tokens
            total.cost = (
                total.cost + use.cost if total.cost is not None and use.cost is not None else None
            )
            table.add_row(
                Text(role),
                Text(short_model(use.model)),
                f"{use.calls} call{'s' if use.calls != 1 else ''}",
                f"{fmt_tokens(use.tokens)} tok",
                fmt_usd(use.cost),
            )
        table.add_row(
            "total",
            "",
            f"{total.calls} calls",
            f"{fmt_tokens(total.tokens)} tok",
            fmt_usd(total.cost),
        )
        return table


#: What each event kind changes in a LiveTask; other kinds change nothing.
_HANDLERS: dict[str, Callable[[LiveTask, dict[str, Any], float], None]] = {
    "task.state": LiveTask._on_task_state,
    "task.plan": LiveTask._on_plan,
    "stream.state": LiveTask._on_stream_state,
    "stream.split": LiveTask._on_split,
    "model.call": LiveTask._on_model_call,
    "review.verdict": LiveTask._on_verdict,
    "review.conflicts": LiveTask._on_conflicts,
    "question": LiveTask._on_question,
    "task.answered": LiveTask._on_answered,
    "attention": LiveTask._on_attention,
}

#: A quiet event stream is reopened after this many seconds (from the last event seen), and
#: being quiet tells the watcher it has caught up with the task's history.
IDLE_S = 3.0


def watch_task(
    client: Any, task_id: str, *, quiet: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Follow a task's events until it ends or waits for a human; return the task.

    The whole history is replayed first, so watching an old task shows how it ran. A state
    that waits for a human ends the watch only when it is the task's current state, not a
    replayed one that was answered long ago. A dropped event stream is resumed from the last
    event seen; a daemon that went away raises DaemonNotRunning.
    """
    task = client.get(task_id)  # an unknown id fails here, before anything is drawn
    console = console or safe_console()
    live_task = LiveTask(
        task_id,
        goal=clean(task.get("goal", "")),
        started=task.get("created_at"),
        width=console.width,
    )
    last_id: int | None = None

    def current_wait(ev: dict[str, Any]) -> bool:
        """Is this human-waiting state the task's latest move (not history)?"""
        now = client.get(task_id)
        return now["state"] == ev["data"]["state"] and now["updated_at"] <= ev["created_at"]

    live: Live | contextlib.nullcontext[None]
    if quiet:
        live = contextlib.nullcontext()
    else:
        live = Live(
            get_renderable=live_task.render,
            console=console,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="visible",
        )
    with live:
        while True:
            try:
                for ev in client.events(task_id, last_event_id=last_id, timeout=IDLE_S):
                    last_id = ev["id"]
                    live_task.apply(ev)
                    if ev.get("type") != "task.state":
                        continue
                    if live_task.state in TERMINAL_STATES or (
                        live_task.state in HUMAN_STATES and current_wait(ev)
                    ):
                        return client.get(task_id)
            except TimeoutError:
                # Quiet: the history is replayed. A task waiting for a human stays quiet.
                if client.get(task_id)["state"] in HUMAN_STATES:
                    return client.get(task_id)
            except (OSError, http.client.HTTPException, DaemonNotRunning):
                # A dropped stream: resume, unless the daemon is gone (client.get raises).
                client.get(task_id)
                time.sleep(0.2)


# --- a finished (or waiting) task -------------------------------------------------------------


def print_task(
    task: dict[str, Any], console: Console | None = None, *, result: bool = True
) -> None:
    """`tierd show`: the task, its streams and verdicts, open questions, result and report.
    Its text is neutralised first (`terminal.clean`): it holds goals and model output."""
    console = console or safe_console()
    task = clean_data(task)
    console.print(
        Text.assemble(
            ("task ", "bold"),
            (task["id"], "bold"),
            "  ",
            (task["state"], STYLE.get(task["state"], "")),
        )
    )
    console.print(Text(f"goal: {task['goal']}"))
    plan = task.get("plan") or {}
    if plan.get("summary"):
        console.print(Text(f"plan: {plan['summary']}", style="dim"))
    print_streams(task, console)
    open_q = [q for q in task.get("questions", []) if q.get("answer") is None]
    for q in open_q:
        console.print(
            Text.assemble(
                (f"question {q['id']}", "magenta"), f" ({q['stream_id']}): {q['question']}"
            )
        )
        console.print(
            Text(f'  answer with: tierd answer {task["id"]} {q["id"]} "..."', style="dim")
        )
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


def result_markdown(text: str) -> Markdown:
    """A task's result as Markdown: neutralised, and its links shown as text and URL rather
    than as terminal hyperlinks whose target the user cannot see."""
    return Markdown(clean(text), hyperlinks=False)


def print_streams(task: dict[str, Any], console: Console) -> None:
    streams = clean_data(task.get("streams") or [])
    if not streams:
        return
    table = Table(
        "stream", "state", "verdict", "rounds", "time", "reason", box=None, header_style="dim"
    )
    for s in streams:
        took = ""
        if s.get("started_at") and s.get("ended_at"):
            took = fmt_s(s["ended_at"] - s["started_at"])
        indent = "  " * int(s.get("depth") or 0)
        table.add_row(
            Text(indent + s["id"]),
            Text(s["state"], style=STYLE.get(s["state"], "")),
            Text(s.get("verdict") or "", style=STYLE.get(s.get("verdict") or "", "")),
            str(s.get("rounds", 0)),
            took,
            Text((s.get("reason") or ""), overflow="ellipsis", no_wrap=True),
        )
    console.print(table)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report's time and cost in plain sentences (shared by `show` and the demo)."""
    t, c = report.get("time") or {}, report.get("cost") or {}
    lines = []
    execution, sequential = t.get("execution_s", 0.0), t.get("sequential_s", 0.0)
    if sequential:
        speedup = f" ({sequential / execution:.1f}x faster)" if execution else ""
        lines.append(
            f"time: the streams ran in {execution:.1f}s of wall-clock time against "
            f"{sequential:.1f}s one after another{speedup}; critical path "
            f"{t.get('critical_path_s', 0.0):.1f}s. The whole task took "
            f"{t.get('wall_clock_s', 0.0):.1f}s with planning, review and merge."
        )
    elif t:
        lines.append(f"time: the whole task took {t.get('wall_clock_s', 0.0):.1f}s.")
    if c:
        total, premium = c.get("total_usd"), c.get("premium_only_usd")
        saved = c.get("tiering_saved_usd")
        share = f" ({saved / premium:.0%})" if premium and saved is not None else ""
        lines.append(
            f"cost: {fmt_usd(total)}; the same tokens all on "
            f"{c.get('premium_model', 'the premium model')} would cost "
            f"{fmt_usd(premium)}: tiering saved {fmt_usd(saved)}{share}."
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
