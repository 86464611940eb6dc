"""Terminal views of a task with rich: the live stream tree for `watch` (the summary for `show`
is in `show.py`, re-exported here; following the events is in `watching.py`).

The live view is built from the task's event stream (replayed from the start, then followed)
and, for a code task's worktree facts, `task/get`: what a user sees is what any other client
of the API could see. Each line of the
tree is one stream: its state, the model doing it, the tokens and dollars spent on it (its
executor calls and the orchestrator's reviews of it), how long it has run, and its verdict.
Sub-streams of a split hang under their parent. Time a stream (or the task) waited for the
human is not work: the time column shows work, the waits are shown apart.

On a terminal the live view never grows past the terminal's height (a taller view leaves
copies of itself in the scrollback at every refresh): finished streams, then pending ones,
collapse into counts, and the tables go, until it fits. The last frame is drawn whole.

Everything shown comes from the daemon and may hold a model's or a stranger's text: it passes
through `terminal.clean` before rich sees it, and goes to rich as `Text` (never markup).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.cli.code_views import LiveCode
from daemon.cli.show import (
    print_report_summary,
    print_streams,
    print_task,
    report_lines,
    result_markdown,
)
from daemon.cli.style import MARK, ROLES, STYLE, fmt_s, fmt_tokens, fmt_usd, plural, short_model
from daemon.cli.terminal import clean_data

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
#: Stream states that are over, and those not begun: collapsed first when room runs out.
DONE_STREAMS = ("accepted", "fixed", "failed", "canceled")
NOT_BEGUN = ("pending",)
#: How far a frame is shortened to fit the terminal (`LiveTask._frame`).
FULL, NO_DONE, NO_PENDING, NO_TABLES, HEAD_ONLY = range(5)


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
    #: Seconds it waited for an answer, and since when it waits now.
    waited: float = 0.0
    wait_since: float | None = None

    def work(self, now: float) -> float:
        """Seconds it has worked: from its start, less its waits for the human."""
        if self.started is None:
            return 0.0
        waiting = now - self.wait_since if self.wait_since is not None else 0.0
        return max(0.0, (self.ended or now) - self.started - self.waited - waiting)


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
    #: The console drawn on: its height bounds a frame (None: no bound).
    console: Console | None = None
    #: Draw the last frame whole, whatever the terminal's height.
    final: bool = False
    #: The human decides in this terminal (`watch` asks): hints point below, not to commands.
    interactive: bool = False
    #: Seconds the task waited for the human, and since when it waits now.
    human_s: float = 0.0
    human_since: float | None = None
    #: The result revision awaiting approval, the most revisions allowed (when an event
    #: says), and the human's decisions so far ({"decision", "comment", "revision"}).
    revision: int = 0
    max_revisions: int | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.code.task_id = self.task_id

    def apply(self, ev: dict[str, Any]) -> None:
        """Take in one event; its text is neutralised first (it may hold a model's output)."""
        with self._lock:
            self._apply(clean_data(ev))

    def _apply(self, ev: dict[str, Any]) -> None:
        data, kind = ev.get("data") or {}, ev.get("type")
        at = ev.get("created_at")
        now = float(at) if isinstance(at, int | float) else time.time()
        if self.started is None:
            self.started = now
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, data, now)

    # --- one method per event kind (see _HANDLERS) ------------------------------------------

    def _on_task_state(self, data: dict[str, Any], now: float) -> None:
        self.state = data["state"]
        self.ended = now if self.state in TERMINAL_STATES else None
        if self.state in HUMAN_STATES:
            self.human_since = self.human_since if self.human_since is not None else now
        elif self.human_since is not None:
            self.human_s += max(0.0, now - self.human_since)
            self.human_since = None

    def human_wait(self, now: float) -> float:
        """Seconds the task has waited for the human so far."""
        return self.human_s + (now - self.human_since if self.human_since is not None else 0.0)

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
        if data["state"] == "waiting":
            line.wait_since = line.wait_since if line.wait_since is not None else now
        elif line.wait_since is not None:
            line.waited += max(0.0, now - line.wait_since)
            line.wait_since = None
        if data["state"] == "running":
            line.started = now if line.started is None else line.started
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
        if data.get("kind") == "approval":
            # Shown by the approval line while it applies, not as a note that outlives it.
            self.revision = int(data.get("revision") or 0)
            if isinstance(data.get("max_revisions"), int):
                self.max_revisions = data["max_revisions"]
        elif not data.get("questions"):
            self.notes.append(f"needs attention: {data.get('reason', '')}")

    def _on_decision(self, data: dict[str, Any], now: float) -> None:
        self.decisions.append(data)
        if data.get("decision") == "reject":
            # The next result is the next revision. (Its attention event comes after the
            # task.state event a watch stops at, so it cannot be waited for.)
            if isinstance(data.get("revision"), int):
                self.revision = data["revision"] + 1
            comment = str(data.get("comment") or "").strip() or "(no comment)"
            self.notes.append(f"rejected revision {data.get('revision', '?')}: {comment}")

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
        if self.final or self.console is None:
            return self._frame(now, FULL)
        room = max(3, self.console.size.height - 1)
        options = self.console.options
        for level in (FULL, NO_DONE, NO_PENDING, NO_TABLES):
            frame = self._frame(now, level)
            if len(self.console.render_lines(frame, options, pad=False)) <= room:
                return frame
        return self._frame(now, HEAD_ONLY)

    def _head(self, now: float) -> Text:
        elapsed = ((self.ended or now) - self.started) if self.started is not None else 0.0
        waited = self.human_wait(now)
        head = Text.assemble(
            ("task ", "bold"),
            (self.task_id, "bold"),
            "  ",
            (self.state, STYLE.get(self.state, "")),
            f"  {fmt_s(max(0.0, elapsed - waited))}",
        )
        if waited >= 0.05:
            head.append(f" + {fmt_s(waited)} waiting for you", style="magenta")
        if self.goal:
            head.append(f"  {self.goal}", style="dim")
        head.no_wrap = True
        head.overflow = "ellipsis"
        return head

    def _frame(self, now: float, level: int) -> RenderableType:
        """The view; from `NO_DONE` on shortened to fit a small terminal."""
        parts: list[RenderableType] = [self._head(now)]
        repo = self.code.header()
        if repo is not None and level < HEAD_ONLY:
            parts.append(repo)
        ordered = self._ordered()
        if level == HEAD_ONLY:
            shown = []
        else:
            collapse: tuple[str, ...] = DONE_STREAMS if level == NO_DONE else ()
            collapse = DONE_STREAMS + NOT_BEGUN if level >= NO_PENDING else collapse
            shown = [(p, line) for p, line in ordered if line.state not in collapse]
        kept = {line.id for _, line in shown}
        hidden = Counter(line.state for _, line in ordered if line.id not in kept)
        if shown:
            parts.append(stream_table(now, shown, self.width, self.titles))
        if hidden:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(hidden.items()))
            parts.append(Text(f"  + {plural(sum(hidden.values()), 'stream')}: {counts}", "dim"))
        if level < NO_TABLES:
            code = self.code.table([line.id for _, line in shown], self.width)
            if code is not None:
                parts.append(code)
            if self.roles:
                parts.append(role_table(self.roles))
            for note in self.notes[-3:]:
                parts.append(Text(note, style="magenta"))
        parts += self._hints(level)
        return Group(*parts)

    def _hints(self, level: int) -> list[Text]:
        """What the human can do now; nothing once the task has ended."""
        if self.state in TERMINAL_STATES:
            return []
        out = []
        if self.questions and level >= NO_TABLES:
            out.append(Text(f"{plural(len(self.questions), 'question')} for you", "magenta"))
        elif self.questions:
            for qid, question in self.questions.items():
                how = (
                    "answer below"
                    if self.interactive
                    else f'answer with: tierd answer {self.task_id} {qid} "..."'
                )
                out.append(Text(f"question {qid}: {question}\n  {how}", style="magenta"))
        if self.state == "awaiting_approval":
            how = (
                "decide below"
                if self.interactive
                else f'tierd approve {self.task_id} (or --reject --comment "...")'
            )
            out.append(Text(f"waiting for approval: {how}", style="magenta"))
        return out


def stream_table(
    now: float, rows: list[tuple[str, StreamLine]], width: int, titles: dict[str, str]
) -> Table:
    """One row per stream: state, model, tokens, cost, work time, waits, verdict."""
    # Titles only when there is room: at 80 columns the numbers matter more.
    show_titles = width >= 100
    table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False, header_style="dim")
    table.add_column("stream", no_wrap=True, overflow="ellipsis")
    if show_titles:
        table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=min(40, width - 78))
    table.add_column("state", no_wrap=True)
    table.add_column("model", no_wrap=True, overflow="ellipsis")
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    waits = any(line.waited or line.wait_since is not None for _, line in rows)
    if waits:
        table.add_column("waited", justify="right", no_wrap=True, style="magenta")
    table.add_column("verdict", no_wrap=True)
    for prefix, line in rows:
        took = fmt_s(line.work(now)) if line.started is not None else ""
        waited = line.waited + (now - line.wait_since if line.wait_since is not None else 0)
        style = STYLE.get(line.state, "")
        cells: list[RenderableType | str] = [
            Text.assemble(prefix, (MARK.get(line.state, " ") + " ", style), (line.id, "bold"))
        ]
        if show_titles:
            cells.append(Text(titles.get(line.id, "")))
        cells += [
            Text(line.state, style=style),
            Text(short_model(line.model), style="dim"),
            fmt_tokens(line.tokens) if line.tokens else "",
            fmt_usd(line.cost) if line.cost else "",
            took,
            *([fmt_s(waited) if waited >= 0.05 else ""] if waits else []),
            Text(line.verdict or "", style=STYLE.get(line.verdict or "", "")),
        ]
        table.add_row(*cells)
    return table


def role_table(roles: dict[str, RoleUse]) -> Table:
    """Calls, tokens and dollars per role, and their total."""
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
    for role in [*ROLES, *sorted(set(roles) - set(ROLES))]:
        use = roles.get(role)
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
            plural(use.calls, "call"),
            f"{fmt_tokens(use.tokens)} tok",
            fmt_usd(use.cost),
        )
    table.add_row(
        "total",
        "",
        plural(total.calls, "call"),
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
    "task.decision": LiveTask._on_decision,
    "tool.step": LiveTask._on_tool_step,
    "code.setup": LiveTask._on_setup,
}


def watch_task(
    client: Any, task_id: str, *, quiet: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Follow a task until it ends or waits for a human; return the task (`watching`)."""
    from daemon.cli.watching import Watcher

    return Watcher(client, task_id, quiet=quiet, console=console).follow()
