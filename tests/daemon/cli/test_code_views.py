"""The terminal views of a code task, in process: `tierd show`'s summary and `tierd watch`'s
live view render what the store holds (a task's repository and base, each stream's worktree
facts written through the store as the engine writes them) and each executor's latest tool
step; text from the model (commands, paths) is shown neutralised."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from daemon.cli.code_views import LiveCode, commands_text
from daemon.cli.terminal import clean
from daemon.cli.views import LiveTask, print_task
from daemon.service.results import wire
from daemon.service.task_views import TaskViews
from daemon.store.store import Store, TaskRow

EVIL = "\x1b]0;PWNED\x07\x1b[2J\x00\x9b31m[red]markup[/red]"
FORBIDDEN = ["\x1b]0;", "\x1b[2J", "\x00", "\x07", "\x9b"]
TASK_ID = "t0000000000000001"
BASE = "1a2b3c4d5e6f" + "0" * 28
SNAPSHOT = "9f8e7d6c5b4a" + "0" * 28
S1 = {
    "branch": f"tierd/{TASK_ID}/s1",
    "worktree": f"/home/u/.tierd/worktrees/{TASK_ID}/s1",
    "start_commit": BASE,
    "head": "c" * 40,
    "files": ["src/a.py", "tests/test_a.py", "README.md"],
    "insertions": 40,
    "deletions": 2,
    "commands": [
        {"command": "python -m pytest -q", "name": "test", "exit_code": 1, "duration_s": 1.5},
        {"command": "ruff check .", "name": "lint", "exit_code": 0, "duration_s": 0.2},
        {"command": f"echo {EVIL}", "name": "shell", "exit_code": 0, "duration_s": 0.1},
        {"command": "python -m pytest -q", "name": "test", "exit_code": 0, "duration_s": 1.4},
    ],
    "steps": 7,
    "max_steps": 40,
    "setup": {"command": "uv sync", "exit_code": 0, "duration_s": 3.0, "output_tail": "ok"},
    "ended": "finish",
}
S2 = {
    "branch": f"tierd/{TASK_ID}/s2",
    "worktree": f"/home/u/.tierd/worktrees/{TASK_ID}/s2",
    "start_commit": BASE,
    "files": [],
    "commands": [],
    "steps": 0,
    "max_steps": 40,
    "setup": {
        "command": "npm ci",
        "exit_code": 1,
        "duration_s": 2.0,
        "output_tail": f"npm ERR! missing lockfile\nnpm ERR! {EVIL}",
    },
    "ended": "setup failed",
}


async def _stored_task(tmp_path: Path) -> dict[str, Any]:
    """The task as `task/get` answers it, from rows written through the store."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    try:
        code = {
            "repo": f"/src/app{EVIL}",
            "repo_given": "/src/app",
            "base": "main",
            "base_commit": BASE,
            "include_uncommitted": True,
            "snapshot_commit": SNAPSHOT,
        }
        row = TaskRow(
            id=TASK_ID,
            state="running",
            goal="Add drag-and-drop",
            created_at=1.0,
            updated_at=1.0,
            code_json=json.dumps(code),
        )
        await store.create_task(row)
        await store.set_task_code(TASK_ID, {"branches": []})
        for sid, facts in (("s1", S1), ("s2", S2)):
            await store.upsert_stream(
                TASK_ID, sid, title=f"Part {sid}", state="accepted", code_json=json.dumps(facts)
            )
        await store.upsert_stream(TASK_ID, "s3", title="Not started", state="pending")
        stored = await store.get_task(TASK_ID)
        assert stored is not None
        return wire(await TaskViews(store).detail(stored))
    finally:
        await store.close()


def _console(*, terminal: bool = False, width: int = 120) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        markup=False,
        emoji=False,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
    )
    return console, out


def _no_raw_controls(text: str) -> None:
    for seq in FORBIDDEN:
        assert seq not in text, repr(seq)


async def test_show_prints_the_repository_base_and_each_streams_facts(tmp_path: Path) -> None:
    task = await _stored_task(tmp_path)
    assert task["code"]["branches"] == []  # merged in by the engine, kept
    console, out = _console(width=220)  # wide: each stream's row on one line
    print_task(task, console)
    text = out.getvalue()
    assert f"repo /src/app{clean(EVIL)}  base main at 1a2b3c4d5e6f" in text
    assert "uncommitted changes" in text and "(snapshot 9f8e7d6c5b4a)" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    s1 = next(line for line in text.splitlines() if f"tierd/{TASK_ID}/s1" in line)
    assert "3 files" in s1 and "+40 -2" in s1 and "7/40" in s1
    assert "setup exit 0; test exit 1, lint exit 0, echo " in s1
    assert f"{clean(EVIL)[:20]}" in s1 and "test exit 0 (ended: finish)" in s1
    s2 = next(line for line in text.splitlines() if f"tierd/{TASK_ID}/s2" in line)
    assert "0 files" in s2 and "setup exit 1" in s2 and "0/40" in s2
    # A failed setup's output is printed for the human, neutralised.
    assert "s2: setup `npm ci` failed:" in text and "npm ERR! missing lockfile" in text
    assert clean(EVIL) in text
    assert "s3" in lines  # a stream without facts is in the streams table only
    assert sum("s3" in line for line in text.splitlines()) == 1
    _no_raw_controls(text)


async def test_show_on_a_terminal_sends_no_control_sequence_of_the_data(tmp_path: Path) -> None:
    task = await _stored_task(tmp_path)
    console, out = _console(terminal=True)
    print_task(task, console)
    _no_raw_controls(out.getvalue())
    assert "[red]markup[/red]" in out.getvalue()  # shown, not obeyed


def test_many_commands_show_the_latest_and_count_the_rest() -> None:
    runs = [{"name": "test", "exit_code": i % 2, "duration_s": 0.1} for i in range(9)]
    text = commands_text(runs, shown=3).plain
    assert text == "6 earlier, test exit 0, test exit 1, test exit 0"
    assert commands_text([{"command": "sleep 999", "name": "shell", "exit_code": None}]).plain == (
        "sleep 999 no exit"
    )


def _events() -> list[dict[str, Any]]:
    def ev(n: int, kind: str, **data: Any) -> dict[str, Any]:
        return {"id": n, "type": kind, "data": data, "created_at": 100.0 + n}

    return [
        ev(1, "task.state", state="planning", previous="queued"),
        ev(2, "task.plan", streams=[{"id": "s1", "title": "One"}, {"id": "s2", "title": "Two"}]),
        ev(3, "task.state", state="running", previous="planning"),
        ev(4, "stream.state", stream_id="s1", state="running", model="openai/gpt-5-mini"),
        ev(5, "code.setup", stream_id="s1", command="uv sync", exit_code=0, duration_s=3.0),
        ev(
            6,
            "tool.step",
            stream_id="s1",
            step=1,
            tool="read_file",
            path="src/a.py",
            command=None,
            exit_code=None,
            ok=True,
            duration_s=0.01,
        ),
        ev(
            7,
            "tool.step",
            stream_id="s1",
            step=2,
            tool="run_command",
            path=None,
            command=f"python -m pytest -q {EVIL}",
            exit_code=1,
            ok=True,
            duration_s=2.25,
        ),
        ev(8, "stream.state", stream_id="s2", state="running", model="openai/gpt-5-mini"),
        ev(9, "code.setup", stream_id="s2", command="npm ci", exit_code=1, duration_s=2.0),
        ev(
            10,
            "tool.step",
            stream_id="s2",
            step=1,
            tool="write_file",
            path="/etc/passwd",
            command=None,
            exit_code=None,
            ok=False,
            duration_s=0.0,
        ),
    ]


def _render(live: LiveTask, *, terminal: bool = False) -> str:
    console, out = _console(terminal=terminal)
    console.print(live.render())
    return out.getvalue()


def test_the_live_view_shows_what_each_executor_is_doing_now() -> None:
    live = LiveTask(TASK_ID, goal="Add drag-and-drop", width=120)
    for ev in _events():
        live.apply(ev)
    text = _render(live)
    s1 = next(line for line in text.splitlines() if line.startswith("s1 ") and "#" in line)
    assert "#2 run_command exit 1 2.2s python -m pytest -q" in s1
    s2 = next(line for line in text.splitlines() if line.startswith("s2 ") and "#" in line)
    assert "#1 write_file refused /etc/passwd" in s2
    assert f"branches tierd/{TASK_ID}/<stream>" in text
    _no_raw_controls(text)
    _no_raw_controls(_render(live, terminal=True))


async def test_the_live_view_takes_the_facts_of_task_get(tmp_path: Path) -> None:
    task = await _stored_task(tmp_path)
    live = LiveTask(TASK_ID, goal=task["goal"], width=120)
    for ev in _events():
        live.apply(ev)
    live.code.update(task)
    text = _render(live)
    assert f"repo /src/app{clean(EVIL)}  base main at 1a2b3c4d5e6f" in text
    s1 = next(line for line in text.splitlines() if line.startswith("s1 ") and "#" in line)
    assert "3 files" in s1 and "+40 -2" in s1 and "7/40" in s1 and "2 earlier, echo" in s1
    assert "#2 run_command exit 1" in s1
    _no_raw_controls(text)


def test_an_older_step_arriving_late_does_not_replace_a_newer_one() -> None:
    code = LiveCode(task_id=TASK_ID)
    code.on_step({"stream_id": "s1", "step": 5, "tool": "finish"}, "tool.step")
    code.on_step({"stream_id": "s1", "step": 4, "tool": "read_file"}, "tool.step")
    code.on_step({"stream_id": "s1", "command": "uv sync", "exit_code": 0}, "code.setup")
    code.on_step({"stream_id": "s1", "step": "x", "tool": "bad"}, "tool.step")  # not a number
    assert code.now["s1"]["tool"] == "finish"


def test_a_text_task_has_no_code_lines() -> None:
    live = LiveTask(TASK_ID, goal="Write a note", width=120)
    for ev in _events()[:4]:
        live.apply(ev)
    text = _render(live)
    assert "repo " not in text and "branches" not in text and "now" not in text
    console, out = _console()
    print_task({"id": TASK_ID, "state": "running", "goal": "g", "code": None}, console)
    assert "repo" not in out.getvalue()


class _Client:
    """The daemon as `watch_task` sees it: task/get and the event stream. A code task's facts
    grow between reads, as the engine writes them."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.gets = 0

    def get(self, task_id: str) -> dict[str, Any]:
        self.gets += 1
        if self.gets == 1:  # the first read: before any stream had facts
            return {**self.task, "streams": []}
        return self.task

    def events(self, task_id: str, last_event_id: int | None, timeout: float) -> Any:
        yield from _events()
        yield {
            "id": 99,
            "type": "task.state",
            "data": {"state": "completed", "previous": "running"},
            "created_at": 200.0,
        }


async def test_watch_reads_a_code_tasks_facts_again_and_shows_the_last(tmp_path: Path) -> None:
    from daemon.cli.views import watch_task

    task = {**await _stored_task(tmp_path), "state": "completed"}
    client = _Client(task)
    console, out = _console()
    done = watch_task(client, TASK_ID, console=console)
    assert done["code"]["repo"] == task["code"]["repo"]
    assert client.gets >= 2
    text = out.getvalue()
    s1 = [line for line in text.splitlines() if line.startswith("s1 ") and "files" in line]
    assert s1 and "3 files" in s1[-1] and "+40 -2" in s1[-1], text
    _no_raw_controls(text)
