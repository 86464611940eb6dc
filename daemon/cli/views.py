"""Terminal views of a task with rich: the live stream tree for `watch` (the summary for `show`
is in `show.py`, re-exported here).

The live view is built from the task's event stream (replayed from the start, then followed)
and, for a code task's worktree facts, `task/get`: what a user sees is what any other client
of the API could see. Each line of the
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
from rich.table import Table
from rich.text import Text

from daemon.cli.client import DaemonNotRunning
from daemon.cli.code_views import LiveCode
from daemon.cli.show import (
    print_report_summary,
    print_streams,
    print_task,
    report_lines,
    result_markdown,
)
from daemon.cli.style import MARK, ROLES, STYLE, fmt_s, fmt_tokens, fmt_usd, short_model
from daemon.cli.terminal import clean, clean_data
from daemon.cli.terminal import console as safe_console

__all__ = [
    "HUMAN_STATES",
    "MARK",
    "ROLES",
    "STOP_STATES",
    "STYLE",
    "TERMINAL_STATES",
    "LiveTask",
    "fmt_s",
    "fmt_tokens",
    "fmt_usd",
    "print_report_summary",
    "print_streams",
    "print_task",
    "report_lines",
    "result_markdown",
    "short_model",
    "watch_task",
]

TERMINAL_STATES = frozenset({"completed", "failed", "canceled"})
HUMAN_STATES = frozenset({"input_required", "awaiting_approval"})
STOP_STATES = TERMINAL_STATES | HUMAN_STATES


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
    #: A code task's repository and each stream's worktree facts and latest tool step.
    code: LiveCode = field(default_factory=LiveCode)
    #: The terminal's width: the stream titles are shown from 100 columns up.
    width: int = 80
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.code.task_id = self.task_id

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

    def _on_tool_step(self, data: dict[str, Any], now: float) -> None:
        self.code.on_step(data, "tool.step")

    def _on_setup(self, data: dict[str, Any], now: float) -> None:
        self.code.on_step(data, "code.setup")

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
        repo = self.code.header()
        if repo is not None:
            parts.append(repo)
        if self.streams:
            parts.append(self._stream_table(now))
        code = self.code.table([line.id for _, line in self._ordered()], self.width)
        if code is not None:
            parts.append(code)
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
    "tool.step": LiveTask._on_tool_step,
    "code.setup": LiveTask._on_setup,
}

#: A quiet event stream is reopened after this many seconds (from the last event seen), and
#: being quiet tells the watcher it has caught up with the task's history.
IDLE_S = 3.0
#: Seconds between reads of a code task's facts (files, commands, steps) while watching it.
CODE_REFRESH_S = 1.0


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
    # A code task's facts are in task/get, not in events: read again now and then.
    live_task.code.update(task)
    code_task, refreshed = task.get("code") is not None and not quiet, time.monotonic()

    def final() -> dict[str, Any]:
        done = client.get(task_id)
        live_task.code.update(done)
        return done

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
                    if code_task and time.monotonic() - refreshed >= CODE_REFRESH_S:
                        live_task.code.update(client.get(task_id))
                        refreshed = time.monotonic()
                    if ev.get("type") != "task.state":
                        continue
                    if live_task.state in TERMINAL_STATES or (
                        live_task.state in HUMAN_STATES and current_wait(ev)
                    ):
                        return final()
            except TimeoutError:
                # Quiet: the history is replayed. A task waiting for a human stays quiet.
                if client.get(task_id)["state"] in HUMAN_STATES:
                    return final()
            except (OSError, http.client.HTTPException, DaemonNotRunning):
                # A dropped stream: resume, unless the daemon is gone (client.get raises).
                client.get(task_id)
                time.sleep(0.2)
