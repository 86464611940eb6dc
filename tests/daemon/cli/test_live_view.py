"""The live view and the result summary, in process: the view fits the terminal (finished
streams collapse into counts; the last frame is whole), rich never writes a frame taller than
the terminal, waits for the human show apart from work, hints go once they no longer apply,
rejections show with their comments, "1 call"; a code task's changes and tests in two lines."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console
from rich.live import Live

from daemon.cli.code_views import code_summary
from daemon.cli.views import LiveTask


def _console(height: int = 15, width: int = 100, terminal: bool = True) -> tuple[Console, Any]:
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        height=height,
        force_terminal=terminal,
        color_system=None,
        markup=False,
        emoji=False,
    )
    return console, out


def _ev(event_type: str, at: float, **data: Any) -> dict[str, Any]:
    return {"id": 1, "type": event_type, "data": data, "created_at": at}


def _lines(view: LiveTask, console: Console) -> list[str]:
    with console.capture() as cap:
        console.print(view.render())
    return cap.get().splitlines()


def _busy_task(console: Console | None) -> LiveTask:
    view = LiveTask("t01", goal="Forty parts", started=0.0, width=100, console=console)
    view.apply(_ev("task.state", 0.0, state="running"))
    for i in range(40):
        sid = f"s{i:02d}"
        state = "accepted" if i < 28 else ("running" if i < 34 else "pending")
        view.apply(_ev("stream.state", 1.0, stream_id=sid, state="running", model="m/cheap"))
        view.apply(_ev("stream.state", 2.0, stream_id=sid, state=state))
    view.apply(_ev("model.call", 2.0, role="planner", model="m/big", prompt_tokens=5))
    return view


def test_the_view_never_grows_past_the_terminal() -> None:
    console, _ = _console(height=15)
    view = _busy_task(console)
    lines = _lines(view, console)
    assert len(lines) <= 14, "\n".join(lines)
    text = "\n".join(lines)
    assert "task t01" in text
    assert all(f"s{i}" in text for i in range(28, 34)), text  # what runs now stays in sight
    assert "28 accepted" in text  # the finished ones are counted
    # The last frame is drawn whole: every stream, once.
    view.final = True
    whole = "\n".join(_lines(view, console))
    assert all(f"s{i:02d}" in whole for i in range(40))


def test_rich_never_draws_a_frame_taller_than_the_terminal() -> None:
    console, out = _console(height=10)
    view = _busy_task(console)
    with Live(get_renderable=view.render, console=console, auto_refresh=False) as live:
        for i in range(5):
            view.apply(_ev("stream.state", 3.0 + i, stream_id=f"s{30 + i}", state="accepted"))
            live.refresh()
    raw = out.getvalue()
    # Before each frame rich moves up over the last one: never more lines than the terminal
    # has, or the rest of the old frame (its header too) stays behind in the scrollback.
    ups = [len(m) // len("\x1b[1A\x1b[2K") for m in re.findall(r"(?:\x1b\[1A\x1b\[2K)+", raw)]
    assert ups and max(ups) <= 9, ups


def test_waits_for_the_human_are_shown_apart_from_work() -> None:
    view = LiveTask("t02", started=0.0)
    view.apply(_ev("task.state", 0.0, state="running"))
    view.apply(_ev("stream.state", 0.0, stream_id="a", state="running", model="m/cheap"))
    view.apply(_ev("stream.state", 1.0, stream_id="a", state="waiting"))
    view.apply(_ev("task.state", 1.5, state="input_required"))
    view.apply(_ev("task.state", 21.0, state="running"))
    view.apply(_ev("stream.state", 21.0, stream_id="a", state="running"))
    view.apply(_ev("stream.state", 22.0, stream_id="a", state="accepted", verdict="accept"))
    view.apply(_ev("model.call", 22.0, role="executor", model="m/cheap", prompt_tokens=9))
    view.apply(_ev("task.state", 23.0, state="completed"))
    console, _ = _console(height=40, width=120)
    text = "\n".join(_lines(view, console))
    row = next(line for line in text.splitlines() if line.lstrip().startswith("✓ a"))
    assert "2.0s" in row and "20.0s" in row, row  # 2 s of work, 20 s waited
    head = text.splitlines()[0]
    assert "3.5s" in head and "19.5s waiting for you" in head, head
    assert "1 call" in text and "1 calls" not in text


def test_hints_go_once_they_no_longer_apply_and_rejections_show() -> None:
    view = LiveTask("t03", started=0.0)
    view.apply(_ev("question", 1.0, question_id="q1", stream_id="a", question="Which region?"))
    view.apply(_ev("task.state", 1.0, state="input_required"))
    console, _ = _console(height=40)
    assert "tierd answer t03 q1" in "\n".join(_lines(view, console))
    view.apply(_ev("task.state", 2.0, state="canceled"))
    assert "answer" not in "\n".join(_lines(view, console))

    view = LiveTask("t04", started=0.0, interactive=True)
    view.apply(_ev("task.state", 1.0, state="awaiting_approval"))
    view.apply(_ev("attention", 1.0, kind="approval", reason="result awaits approval"))
    text = "\n".join(_lines(view, console))
    assert "decide below" in text and "tierd approve" not in text
    assert "needs attention" not in text
    view.apply(_ev("task.decision", 2.0, decision="reject", comment="Shorter.", revision=0))
    view.apply(_ev("task.state", 2.0, state="merging"))
    text = "\n".join(_lines(view, console))
    assert "rejected revision 0: Shorter." in text and view.revision == 1
    assert "decide below" not in text


def test_a_code_tasks_changes_and_tests_in_two_lines() -> None:
    task = {
        "state": "completed",
        "code": {"repo": "/src/app"},
        "streams": [
            {
                "id": "s1",
                "code": {
                    "files": ["a.py", "b.py"],
                    "insertions": 40,
                    "deletions": 2,
                    "commands": [
                        {"name": "test", "exit_code": 1},
                        {"name": "lint", "exit_code": 0},
                        {"name": "test", "exit_code": 0},
                    ],
                },
            },
            {"id": "s2", "code": {"files": ["b.py", "c.py"], "insertions": 3, "deletions": 0}},
            {"id": "s3", "code": None},
        ],
    }
    summary = code_summary(task)
    assert summary is not None
    assert summary.plain == "changes: 3 files, +43 -2 (2 streams)\ntests: s1 exit 0"
    assert code_summary({**task, "code": None}) is None


class _Daemon:
    """task/get and a finished task's event stream, as `watch` reads them."""

    def get(self, task_id: str) -> dict[str, Any]:
        return {"id": "t05", "state": "completed", "goal": "g", "created_at": 1.0}

    def events(self, task_id: str, last_event_id: int | None, timeout: float) -> Any:
        yield {**_ev("task.state", 1.0, state="running"), "id": 1}
        yield {**_ev("task.state", 2.0, state="completed"), "id": 2}


def test_a_piped_watch_ends_its_last_frame_with_a_newline() -> None:
    from daemon.cli.views import watch_task

    console, out = _console(terminal=False)
    assert watch_task(_Daemon(), "t05", console=console)["state"] == "completed"
    assert out.getvalue().startswith("task t05") and out.getvalue().endswith("\n")
