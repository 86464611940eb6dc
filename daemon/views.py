"""Terminal views of a task with rich: the live stream tree for `watch`, the summary for `show`.

The live view is built only from the event stream, so what a user sees is what any other
client of the API could see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

STOP_STATES = {"completed", "failed", "canceled", "input_required", "awaiting_approval"}
STYLE = {"pending": "dim", "running": "yellow", "reviewing": "cyan", "waiting": "magenta",
         "accepted": "green", "fixed": "green", "failed": "red", "completed": "green",
         "canceled": "red", "input_required": "magenta", "awaiting_approval": "magenta"}


@dataclass
class StreamLine:
    id: str
    parent: str | None = None
    state: str = "pending"
    model: str = ""
    tokens: int = 0
    cost: float = 0.0
    verdict: str | None = None
    started: float | None = None
    ended: float | None = None


@dataclass
class LiveTask:
    task_id: str
    state: str = "queued"
    started: float = field(default_factory=time.time)
    streams: dict[str, StreamLine] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    role_tokens: dict[str, int] = field(default_factory=dict)
    role_cost: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def apply(self, ev: dict[str, Any]) -> None:
        data, kind = ev.get("data", {}), ev.get("type")
        now = ev.get("created_at", time.time())
        if kind == "task.state":
            self.state = data["state"]
        elif kind == "task.plan":
            for s in data.get("streams", []):
                self.titles[s["id"]] = s["title"]
                self.streams.setdefault(s["id"], StreamLine(s["id"]))
        elif kind == "stream.state":
            line = self.streams.setdefault(data["stream_id"], StreamLine(data["stream_id"]))
            line.parent = data.get("parent")
            line.state = data["state"]
            line.model = data.get("model", line.model)
            line.verdict = data.get("verdict", line.verdict)
            if data["state"] == "running" and line.started is None:
                line.started = now
            if data["state"] in {"accepted", "fixed", "failed"}:
                line.ended = now
        elif kind == "stream.split":
            for sid in data.get("into", []):
                self.streams.setdefault(sid, StreamLine(sid, parent=data["stream_id"]))
        elif kind == "model.call":
            role = data["role"]
            tokens = data.get("prompt_tokens", 0) + data.get("completion_tokens", 0)
            self.role_tokens[role] = self.role_tokens.get(role, 0) + tokens
            self.role_cost[role] = self.role_cost.get(role, 0.0) + data.get("cost_usd", 0.0)
            sid = data.get("stream_id")
            if sid and sid in self.streams:
                self.streams[sid].tokens += tokens
                self.streams[sid].cost += data.get("cost_usd", 0.0)
        elif kind == "review.conflicts" and data.get("conflicts"):
            for c in data["conflicts"]:
                self.notes.append(f"conflict: {c.get('description', '')}")
        elif kind == "attention":
            self.notes.append(f"needs you: {data.get('reason', '')}")

    def render(self) -> Tree:
        elapsed = time.time() - self.started
        root = Tree(Text.assemble((f"task {self.task_id} ", "bold"),
                                  (self.state, STYLE.get(self.state, "")),
                                  f"  {elapsed:5.1f}s"))
        nodes: dict[str, Tree] = {}
        for line in self.streams.values():
            end = line.ended or time.time()
            took = f"{end - line.started:5.1f}s" if line.started else "     "
            label = Text.assemble(
                (f"{line.state:<9} ", STYLE.get(line.state, "")), (f"{line.id:<14}", "bold"),
                f" {self.titles.get(line.id, '')[:40]:<40} ",
                (f"{line.model:<14} ", "dim"), f"{line.tokens:>7} tok ",
                f"${line.cost:8.5f} ", took,
                (f"  {line.verdict}" if line.verdict else "", "italic"))
            parent = nodes.get(line.parent or "", root)
            nodes[line.id] = parent.add(label)
        for role in ("planner", "orchestrator", "executor"):
            if role in self.role_tokens:
                root.add(Text(f"{role:<12} {self.role_tokens[role]:>8} tok  "
                              f"${self.role_cost[role]:.5f}", style="dim"))
        for note in self.notes[-3:]:
            root.add(Text(note, style="magenta"))
        return root


def watch_task(client: Any, task_id: str, *, quiet: bool = False) -> dict[str, Any]:
    """Follow a task's events until it finishes or needs a human; return the task."""
    live_task = LiveTask(task_id)
    console = Console(stderr=True)
    last_id: int | None = None
    with Live(live_task.render(), console=console, refresh_per_second=8,
              transient=False, redirect_stdout=False) as live:
        if quiet:
            live.stop()
        while live_task.state not in STOP_STATES:
            try:
                for ev in client.events(task_id, last_event_id=last_id, timeout=30.0):
                    last_id = ev["id"]
                    live_task.apply(ev)
                    if not quiet:
                        live.update(live_task.render())
                    if live_task.state in STOP_STATES:
                        break
            except Exception:  # a dropped stream: resume from the last event seen
                if client.get(task_id)["state"] in STOP_STATES:
                    break
                time.sleep(0.2)
    return client.get(task_id)


def print_task(task: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(Text.assemble(("task ", "bold"), task["id"], "  ",
                                (task["state"], STYLE.get(task["state"], ""))))
    console.print(f"goal: {task['goal']}")
    table = Table("stream", "state", "verdict", "rounds", "reason", box=None)
    for s in task.get("streams", []):
        table.add_row(s["id"], s["state"], s.get("verdict") or "", str(s.get("rounds", 0)),
                      (s.get("reason") or "")[:60])
    if task.get("streams"):
        console.print(table)
    for q in task.get("questions", []):
        if q.get("answer") is None:
            console.print(f"[magenta]question {q['id']}[/] ({q['stream_id']}): {q['question']}")
    if task.get("result"):
        console.print(Panel(Markdown(task["result"]), title="result"))
    if task.get("error"):
        console.print(f"[red]error:[/] {task['error']}")
    report = task.get("report")
    if report:
        print_report_summary(report, console)


def print_report_summary(report: dict[str, Any], console: Console) -> None:
    t, c, u = report["time"], report["cost"], report["usage"]
    console.print(Group(
        Text(f"wall clock {t['wall_clock_s']:.2f}s; streams ran {t['execution_s']:.2f}s "
             f"against {t['sequential_s']:.2f}s one after another "
             f"(critical path {t['critical_path_s']:.2f}s)"),
        Text(f"cost ${c['total_usd']:.5f}; all on {c['premium_model']}: "
             f"${c['premium_only_usd']:.5f}; tiering saved ${c['tiering_saved_usd']:.5f}"),
    ))
    table = Table("role", "calls", "tokens", "cost", box=None)
    for role, b in u["per_role"].items():
        table.add_row(role, str(int(b["calls"])), str(int(b["tokens"])),
                      f"${b['cost_usd']:.5f}")
    console.print(table)
