"""The coder: the executor of a code task, a tool-using agent in a git worktree of its own.

Roles only say what the coder is told: `coder_messages` builds its first messages from
`prompts/coder.md` (its stream, the project's instructions and commands, its dependencies'
summaries, a redo's feedback). The engine runs the tool loop, keeps ownership (the write tools
refuse paths outside the stream's globs, whatever the prompt says) and records every step.

When the loop ends, `coder_review_text` turns what tierd recorded (the coder's summary, the
diff against where the stream started, the commands with their real exit codes) into the
text the orchestrator reviews as the stream's output, bounded, with the facts stated before
the claims so the review can hold the claims to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from roles.models.content import AttachmentContent, with_pictures
from roles.plan.schema import StreamSpec
from roles.project import ProjectContext, clip_text
from roles.prompts import (
    PromptRules,
    one_line,
    pictures_of,
    project_variables,
    render_messages,
)

__all__ = ["coder_messages", "coder_review_text"]

#: The file tree in a coder's prompt: shorter than the planner's, since the coder can list
#: files itself and its prompt is sent again with every step.
CODER_TREE_CHARS = 8_000
SUMMARY_CHARS = 4_000
DIFF_STAT_CHARS = 3_000
DIFF_CHARS = 30_000
#: Commands listed in a review (the latest ones), and how much output is shown per command.
REVIEW_COMMANDS = 20
OUTPUT_CHARS = 1_500
#: Commands whose output is shown (the last ones that have output).
REVIEW_OUTPUTS = 3


def coder_messages(
    stream: StreamSpec,
    goal_line: str,
    dep_outputs: Mapping[str, str],
    rules: PromptRules,
    project: ProjectContext,
    feedback: str | None = None,
    answers: Mapping[str, str] | None = None,
    *,
    previous_summary: str | None = None,
    max_steps: int | None = None,
    attachments: Sequence[AttachmentContent] = (),
    show_images: bool = False,
    descriptions: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The coder's first messages: a system message (its role, its tools, ownership, finish
    with a summary) and a user message (its stream and material).

    `dep_outputs` maps each direct dependency to its summary (its work is already in the
    worktree), shown in `depends_on` order. `answers` maps questions to the human's answers.
    On a redo, `feedback` is the reviewer's and `previous_summary` (optional) the summary that
    was sent back. `max_steps`, when given, is stated as the step budget. `attachments` are
    the stream's own, shown as to a text executor (`executor_messages`).
    """
    ordered = {dep: dep_outputs[dep] for dep in stream.depends_on if dep in dep_outputs}
    ordered.update({key: value for key, value in dep_outputs.items() if key not in ordered})
    variables = project_variables(project)
    variables["file_tree"] = project.tree_for_prompt(CODER_TREE_CHARS)
    messages = render_messages(
        "coder.md",
        stream=stream,
        goal_line=one_line(goal_line),
        dep_outputs=ordered,
        rules=rules,
        feedback=feedback,
        previous_summary=previous_summary if feedback else None,
        answers=dict(answers or {}),
        max_steps=max_steps,
        attachments=list(attachments),
        show_images=show_images,
        descriptions=dict(descriptions or {}),
        **variables,
    )
    pictures = pictures_of(attachments) if show_images else []
    return [dict(message) for message in with_pictures(messages, pictures)]


def _command_text(command: Mapping[str, Any]) -> str:
    name = str(command.get("name") or "command")
    line = one_line(str(command.get("command") or ""), 300)
    code = command.get("exit_code")
    result = "no exit code (timed out or stopped)" if code is None else f"exit {code}"
    if code is not None:
        result += " (passed)" if code == 0 else " (FAILED)"
    duration = command.get("duration_s")
    took = f", {float(duration):.1f} s" if isinstance(duration, int | float) else ""
    return f"{name}: `{line}` -> {result}{took}"


def _commands_section(commands: Sequence[Mapping[str, Any]]) -> list[str]:
    if not commands:
        return ["The executor ran no command."]
    shown = list(commands)[-REVIEW_COMMANDS:]
    first = len(commands) - len(shown) + 1
    lines = []
    if first > 1:
        lines.append(f"({first - 1} earlier commands not shown)")
    with_output = [i for i, c in enumerate(shown) if str(c.get("output") or "").strip()]
    show_output = set(with_output[-REVIEW_OUTPUTS:])
    for offset, command in enumerate(shown):
        lines.append(f"{first + offset}. {_command_text(command)}")
        if offset in show_output:
            tail = _tail(str(command["output"]), OUTPUT_CHARS)
            lines.append(f"<command-output>\n{tail}\n</command-output>")
    tests = [c for c in commands if c.get("name") == "test"]
    if tests:
        code = tests[-1].get("exit_code")
        verdict = "passed" if code == 0 else "FAILED"
        lines.append(f"The executor's last run of the test command {verdict} (exit {code}).")
    else:
        lines.append("The executor did not run the test command.")
    return lines


def _tail(text: str, limit: int) -> str:
    """The end of a command's output, where the failures and the totals are."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} earlier characters not shown]\n{text[-limit:]}"


def _test_run_section(test_run: Mapping[str, Any]) -> list[str]:
    code = test_run.get("exit_code")
    lines = [
        "tierd's own run of the test command on this stream's worktree (this decides over any "
        "run by the executor):",
        _command_text({"name": "test", **test_run}),
    ]
    output = str(test_run.get("output") or "").strip()
    if output:
        lines.append(f"<command-output>\n{_tail(output, OUTPUT_CHARS * 2)}\n</command-output>")
    lines.append(f"Result: {'passed' if code == 0 else 'FAILED'}.")
    return lines


def coder_review_text(
    summary: str,
    diff_stat: str,
    diff: str,
    commands: Sequence[Mapping[str, Any]],
    *,
    test_run: Mapping[str, Any] | None = None,
) -> str:
    """What the orchestrator reviews for a code stream, bounded (about 45,000 characters).

    `commands` are the commands the coder ran, in order, as tierd recorded them: mappings with
    "command", "name" ("test", "lint", "shell"), "exit_code" (None: timed out or stopped),
    "duration_s" and optionally "output". `diff_stat` and `diff` are against the commit the
    stream started from. `test_run` (optional, same keys) is tierd's own run of the test
    command on the worktree: when given, the review is told it decides.
    """
    parts = ["## Commands run in the sandbox (exit codes as tierd recorded them)"]
    parts += _commands_section(commands)
    if test_run is not None:
        parts += ["", *_test_run_section(test_run)]
    # rstrip only: `git diff --stat` indents its lines, the first one too.
    stat = diff_stat.rstrip()
    parts += ["", "## Files changed (against the commit the stream started from)"]
    if stat.strip():
        parts.append(clip_text(stat, DIFF_STAT_CHARS, what="the file list"))
    else:
        parts.append("None: the stream changed no file.")
    if diff.strip():
        body = clip_text(diff.strip(), DIFF_CHARS, what="the diff")
        parts += ["", "## The diff", "<diff>", body, "</diff>"]
    text = summary.strip() or "(no summary)"
    parts += [
        "",
        "## The executor's summary (its own words: check them against the facts above)",
        "<summary>",
        clip_text(text, SUMMARY_CHARS, what="the summary"),
        "</summary>",
    ]
    return "\n".join(parts)
