"""Terminal views of a code task: its repository and base, and what each stream did in its
worktree (branch, files changed, +insertions/-deletions, commands and their exit codes, steps
used), for `tierd show`; and, for `tierd watch`, the same kept up to date with what each
executor is doing now (its latest `tool.step` event).

The facts come from `task/get` (`code` of the task and of each stream) and from events; like
every view they may hold a model's text (a command line, a path), so they go through
`terminal.clean` and reach rich as `Text`, never markup.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.cli.terminal import clean, clean_data

__all__ = [
    "LiveCode",
    "code_summary",
    "commands_text",
    "print_code",
    "print_repo",
    "task_code_line",
]

#: Commands shown per stream: the latest ones, the count of the others.
SHOWN_COMMANDS = 4
#: Lines of a failed setup's output shown by `show`.
SETUP_TAIL_LINES = 12


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def short_sha(sha: Any) -> str:
    return str(sha)[:12] if sha else "?"


def task_code_line(code: dict[str, Any]) -> Text:
    """'repo /path  base main at 1a2b3c4d5e6f' (+ the snapshot of uncommitted changes)."""
    line = Text.assemble(
        ("repo ", "dim"),
        str(code.get("repo") or "?"),
        ("  base ", "dim"),
        str(code.get("base") or "HEAD"),
        (" at ", "dim"),
        short_sha(code.get("base_commit")),
    )
    if code.get("snapshot_commit"):
        line.append(" + uncommitted changes ", style="dim")
        line.append(f"(snapshot {short_sha(code['snapshot_commit'])})")
    elif code.get("include_uncommitted"):
        line.append(" (no uncommitted changes)", style="dim")
    return line


def files_text(code: dict[str, Any]) -> str:
    files = code.get("files")
    if not isinstance(files, list):
        return ""
    return f"{len(files)} file{'s' if len(files) != 1 else ''}"


def diff_text(code: dict[str, Any]) -> Text:
    ins, dels = code.get("insertions"), code.get("deletions")
    if ins is None and dels is None:
        return Text("")
    return Text.assemble((f"+{ins or 0}", "green"), " ", (f"-{dels or 0}", "red"))


def steps_text(steps: Any, most: Any) -> str:
    if steps is None:
        return ""
    return f"{steps}/{most}" if most else str(steps)


def _command_name(run: dict[str, Any]) -> str:
    name = run.get("name")
    if name and name != "shell":
        return str(name)
    command = str(run.get("command") or name or "?")
    return command if len(command) <= 40 else command[:39] + "…"


def _exit_text(exit_code: Any) -> tuple[str, str]:
    if exit_code is None:
        return "no exit", "yellow"
    return (f"exit {exit_code}", "green" if exit_code == 0 else "red")


def commands_text(commands: Any, shown: int = SHOWN_COMMANDS) -> Text:
    """The latest commands with their exit codes: 'test exit 1, test exit 0' (+ how many more)."""
    runs = [c for c in commands if isinstance(c, dict)] if isinstance(commands, list) else []
    out = Text()
    if len(runs) > shown:
        out.append(f"{len(runs) - shown} earlier, ", style="dim")
    for i, run in enumerate(runs[-shown:]):
        if i:
            out.append(", ")
        out.append(f"{_command_name(run)} ")
        out.append(*_exit_text(run.get("exit_code")))
    return out


def _setup_text(setup: Any) -> Text:
    if not isinstance(setup, dict):
        return Text("")
    words, style = _exit_text(setup.get("exit_code"))
    return Text(f"setup {words}", style=style)


def _last_test(code: dict[str, Any]) -> dict[str, Any] | None:
    runs = code.get("commands")
    if not isinstance(runs, list):
        return None
    tests = [r for r in runs if isinstance(r, dict) and r.get("name") == "test"]
    return tests[-1] if tests else None


def code_summary(task: dict[str, Any]) -> Text | None:
    """A code task's changes and tests in two lines, from its streams' facts: 'changes: 4
    files, +52 -3 (2 streams)' and 'tests: s1 exit 0, s2 exit 1' (each stream's last test
    run); None for a text task."""
    task = clean_data(task)
    if not isinstance(task.get("code"), dict):
        return None
    facts = [s["code"] for s in task.get("streams") or [] if isinstance(s.get("code"), dict)]
    ids = [s["id"] for s in task.get("streams") or [] if isinstance(s.get("code"), dict)]
    files = {f for c in facts for f in c.get("files") or [] if isinstance(f, str)}
    ins = sum(_int(c.get("insertions")) for c in facts)
    dels = sum(_int(c.get("deletions")) for c in facts)
    out = Text.assemble(
        ("changes: ", "bold"),
        f"{len(files)} file{'s' if len(files) != 1 else ''}, ",
        (f"+{ins}", "green"),
        " ",
        (f"-{dels}", "red"),
        f" ({len(facts)} stream{'s' if len(facts) != 1 else ''})",
    )
    runs = [(sid, _last_test(c)) for sid, c in zip(ids, facts, strict=True)]
    tested = [(sid, run) for sid, run in runs if run is not None]
    out.append("\ntests: ", style="bold")
    if not tested:
        out.append("none run", style="dim")
    for i, (sid, run) in enumerate(tested):
        out.append(", " if i else "")
        out.append(f"{sid} ")
        out.append(*_exit_text(run.get("exit_code")))
    return out


def print_repo(task: dict[str, Any], console: Console) -> None:
    """`tierd show` for a code task: its repository and base (nothing for a text task)."""
    code = clean_data(task.get("code"))
    if isinstance(code, dict):
        console.print(task_code_line(code))


def print_code(task: dict[str, Any], console: Console) -> None:
    """`tierd show` for a code task: one row per stream that has code facts; a failed setup's
    last lines of output below."""
    task = clean_data(task)
    if not isinstance(task.get("code"), dict):
        return
    streams = [s for s in task.get("streams") or [] if isinstance(s.get("code"), dict)]
    if not streams:
        return
    table = Table(
        "stream", "branch", "files", "+/-", "steps", "commands", box=None, header_style="dim"
    )
    for s in streams:
        c = s["code"]
        commands = commands_text(c.get("commands"))
        if isinstance(c.get("setup"), dict):
            commands = Text.assemble(_setup_text(c["setup"]), "; " if commands else "", commands)
        if c.get("ended"):
            commands.append(f" (ended: {c['ended']})", style="dim")
        table.add_row(
            Text(s["id"]),
            Text(str(c.get("branch") or "")),
            files_text(c),
            diff_text(c),
            steps_text(c.get("steps"), c.get("max_steps")),
            commands,
        )
    console.print(table)
    for s in streams:
        setup = s["code"].get("setup")
        if isinstance(setup, dict) and setup.get("exit_code") not in (0,):
            tail = str(setup.get("output_tail") or "").splitlines()[-SETUP_TAIL_LINES:]
            console.print(Text(f"{s['id']}: setup `{setup.get('command') or ''}` failed:"))
            for line in tail:
                console.print(Text(f"  {line}", style="dim"))


def _now_text(data: dict[str, Any]) -> Text:
    """One tool step as 'what it is doing now': '#7 run_command exit 1 2.1s pytest -q'; the
    outcome before the path or command, which a narrow column cuts."""
    out = Text(f"#{data.get('step', '?')} {data.get('tool') or '?'}")
    if data.get("exit_code") is not None:
        out.append(" ")
        out.append(*_exit_text(data["exit_code"]))
    elif data.get("ok") is False:
        out.append(" refused", style="red")
    if isinstance(data.get("duration_s"), int | float) and data["duration_s"] >= 0.05:
        out.append(f" {data['duration_s']:.1f}s", style="dim")
    target = data.get("path") or data.get("command") or ""
    if target:
        out.append(f" {target}")
    return out


@dataclass
class LiveCode:
    """A code task as the live view shows it: the facts of the last `task/get`, and each
    stream's latest tool step from the event stream. Thread-safe: the watcher updates it
    while rich renders it."""

    task_id: str = ""
    task: dict[str, Any] | None = None
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: stream id -> its latest step (tool.step or code.setup), already cleaned.
    now: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, task: dict[str, Any]) -> None:
        """Take the code facts of a `task/get` answer."""
        task = clean_data(task)
        with self._lock:
            if isinstance(task.get("code"), dict):
                self.task = task["code"]
            for s in task.get("streams") or []:
                if isinstance(s, dict) and isinstance(s.get("code"), dict):
                    self.streams[s["id"]] = s["code"]

    def on_step(self, data: dict[str, Any], kind: str) -> None:
        """A `tool.step` or `code.setup` event's data (cleaned by the caller)."""
        sid = data.get("stream_id")
        if not isinstance(sid, str):
            return
        with self._lock:
            seen = self.now.get(sid)
            if kind == "code.setup":
                if seen is None or seen.get("tool") == "setup":
                    self.now[sid] = {**data, "tool": "setup", "step": 0}
            elif seen is None or _int(data.get("step")) >= _int(seen.get("step")):
                self.now[sid] = data

    @property
    def active(self) -> bool:
        return self.task is not None or bool(self.streams) or bool(self.now)

    def header(self) -> Text | None:
        with self._lock:
            return None if self.task is None else task_code_line(self.task)

    def table(self, order: list[str], width: int) -> RenderableType | None:
        """One row per stream with code facts or a step, in `order` (the stream tree's)."""
        with self._lock:
            ids = [i for i in order if i in self.streams or i in self.now]
            if not ids:
                return None
            return self._table(ids, width)

    def _table(self, ids: list[str], width: int) -> Table:
        prefix = f"tierd/{self.task_id}/"
        # Branches named as usual are one line under the table, not a wide column in it.
        odd = any((self.streams.get(i) or {}).get("branch") not in (None, prefix + i) for i in ids)
        # The narrow columns have fixed widths; the wide ones (what it is doing now, and the
        # commands from 110 columns up) take what is left, cut with an ellipsis.
        commands = width >= 110
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False, header_style="dim")
        fixed: list[tuple[str, int, JustifyMethod]] = [
            ("stream", min(12, max(6, *map(len, ids))), "left")
        ]
        if odd:
            fixed.append(("branch", 20, "left"))
        fixed += [("files", 8, "right"), ("+/-", 10, "right"), ("steps", 7, "right")]
        if commands:
            fixed.append(("commands", 30, "left"))
        for name, size, justify in fixed:
            table.add_column(
                name,
                no_wrap=True,
                overflow="ellipsis",
                min_width=size,
                max_width=size,
                justify=justify,
            )
        # Two columns of padding between columns; one spare so the line never wraps.
        left = width - sum(size for _, size, _ in fixed) - 2 * len(fixed) - 1
        table.add_column("now", no_wrap=True, overflow="ellipsis", max_width=max(16, left))
        for sid in ids:
            c = self.streams.get(sid) or {}
            step = self.now.get(sid) or {}
            steps = max(_int(c.get("steps")), _int(step.get("step"))) or None
            cells: list[RenderableType | str] = [Text(sid, style="bold")]
            if odd:
                cells.append(Text(str(c.get("branch") or "")))
            cells += [
                files_text(c),
                diff_text(c),
                steps_text(steps, c.get("max_steps")),
                *([commands_text(c.get("commands"), shown=2)] if commands else []),
                _now_text(step) if step else Text(""),
            ]
            table.add_row(*cells)
        if not odd:
            table.caption = clean(f"branches {prefix}<stream>")
            table.caption_justify = "left"
            table.caption_style = "dim"
        return table
