"""The human's stopping points in `tierd watch`: the result shown where the user is, and, on
a terminal, the questions answered and the result approved or rejected right there.

The merged result (for a code task also its changes and test results) is printed when the
task completes and before it asks for approval: nobody approves what they have not seen. On a
terminal (stdin and stdout both), `watch` then asks every open question in turn and sends the
answers in one call, or offers approve / reject-with-comment / decide later; a rejection
needs a comment, and one that would use the last revision `review.max_revisions` allows, or
fail the task, says so first. Off a terminal nothing is asked: `watch` exits 4 as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from daemon.cli.code_views import code_summary
from daemon.cli.show import result_markdown
from daemon.cli.style import plural
from daemon.cli.terminal import clean, clean_data

__all__ = ["Reader", "ask_answers", "ask_decision", "interactive", "print_result"]

#: Reads one line with a prompt (`input`); EOFError means "later".
Reader = Callable[[str], str]


def interactive() -> bool:
    """Whether a human is at this terminal to answer (stdin and stdout both terminals)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def print_result(task: dict[str, Any], console: Console, *, revision: int | None = None) -> None:
    """The task's result as Markdown in a panel, and a code task's changes and tests."""
    task = clean_data(task)
    if task["state"] == "awaiting_approval":
        title = "result for your approval" + (f" (revision {revision})" if revision else "")
    else:
        title = "result"
    console.print(Panel(result_markdown(task["result"]), title=title, title_align="left"))
    summary = code_summary(task)
    if summary is not None:
        console.print(summary)


def _read(read: Reader, prompt: str) -> str | None:
    try:
        return read(prompt).strip()
    except EOFError:
        return None


def ask_answers(task: dict[str, Any], console: Console, read: Reader = input) -> dict[str, str]:
    """Every open question asked in turn; the answers given (a blank one is left open)."""
    task = clean_data(task)
    open_q = [q for q in task.get("questions") or [] if q.get("answer") is None]
    console.print(
        Text(
            f"{plural(len(open_q), 'question')} for you; all answers go together (leave one "
            "blank to answer it later):",
            style="magenta",
        )
    )
    answers: dict[str, str] = {}
    for q in open_q:
        console.print(
            Text.assemble((f"question {q['id']}", "magenta"), f" ({q['stream_id']}): ")
            + Text(str(q["question"]))
        )
        text = _read(read, "  answer> ")
        if text is None:
            break
        if text:
            answers[q["id"]] = text
    return answers


def _revision_warning(revision: int, max_revisions: int | None) -> tuple[str, bool] | None:
    """What a rejection of revision `revision` would lead to, when it matters: (the words,
    whether the task fails and so the rejection needs confirming)."""
    if max_revisions is None:
        return None
    if revision >= max_revisions:
        return (
            f"review.max_revisions is {max_revisions} and this is revision {revision}: "
            "rejecting it fails the task (no further revision is allowed)",
            True,
        )
    if revision == max_revisions - 1:
        return (
            f"rejecting asks for the last revision allowed (review.max_revisions is "
            f"{max_revisions}); rejecting that one fails the task",
            False,
        )
    return None


def ask_decision(
    task_id: str,
    revision: int,
    max_revisions: int | None,
    console: Console,
    read: Reader = input,
) -> tuple[str, str | None] | None:
    """Approve, reject with a comment, or decide later (None)."""
    while True:
        choice = _read(read, "approve (a), reject with a comment (r), or decide later (l)? ")
        if choice is None or choice.lower() in {"l", "later", ""}:
            return None
        if choice.lower() in {"a", "approve"}:
            return "approve", None
        if choice.lower() not in {"r", "reject"}:
            console.print(Text(f"not a choice: {clean(choice)!r}", style="yellow"))
            continue
        warning = _revision_warning(revision, max_revisions)
        if warning is not None:
            console.print(Text(f"note: {warning[0]}", style="yellow"))
            if warning[1]:
                sure = _read(read, "reject it and fail the task? (y/N) ")
                if (sure or "").lower() not in {"y", "yes"}:
                    continue
        comment = _read(read, "what should change? ")
        if comment is None:
            return None
        if not comment:
            console.print(Text("a rejection needs a comment: what should change", "yellow"))
            continue
        return "reject", comment


def later_hint(task: dict[str, Any]) -> str:
    """How to act on a task left waiting: the commands."""
    task_id = clean(task["id"])
    if task["state"] == "awaiting_approval":
        return f'waiting for approval: tierd approve {task_id} (or --reject --comment "...")'
    open_q = [q for q in task.get("questions") or [] if q.get("answer") is None]
    ids = ", ".join(clean(q["id"]) for q in open_q)
    return f'waiting for answers ({ids}): tierd answer {task_id} QUESTION "..."'
