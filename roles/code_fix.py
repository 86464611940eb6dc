"""The orchestrator fixing a code stream itself: what it is told when its review says "fix".

A text stream's fix is text the orchestrator writes (`roles.orchestrator.fix`); a code
stream's result is its branch, so the orchestrator fixes it the way the executor worked: with
the same tools, in the stream's worktree, for a few steps. `code_fix_messages` builds the first
messages of that loop from `prompts/code_fix.md`: the stream, the defect the review found, and
the work as the review saw it (facts first: commands with exit codes, the diff, the summary).
The engine runs the loop, keeps the stream's ownership and tests the result itself.
"""

from __future__ import annotations

from typing import Any

from roles.plan.schema import Review, StreamSpec
from roles.project import ProjectContext, clip_text
from roles.prompts import PromptRules, one_line, project_variables, render_messages

__all__ = ["FIX_TREE_CHARS", "WORK_CHARS", "code_fix_messages", "fix_problem"]

#: The file tree in the fix prompt (the tools can list the rest).
FIX_TREE_CHARS = 6_000
#: The stream's work as reviewed (commands, diff, summary), bounded.
WORK_CHARS = 40_000
PROBLEM_CHARS = 4_000


def fix_problem(verdict: Review) -> str:
    """What the review asks to change: its reason, and its feedback when it gave one."""
    parts = [verdict.reason.strip()]
    feedback = (verdict.feedback or "").strip()
    if feedback and feedback != parts[0]:
        parts.append(feedback)
    text = "\n\n".join(p for p in parts if p) or "(the review named no defect: check the work)"
    return clip_text(text, PROBLEM_CHARS, what="the defect")


def code_fix_messages(
    stream: StreamSpec,
    goal_line: str,
    rules: PromptRules,
    project: ProjectContext,
    problem: str,
    work: str,
    *,
    max_steps: int,
) -> list[dict[str, Any]]:
    """The orchestrator's first messages for fixing `stream`: a system message (its job, the
    tools, ownership, the step budget, tierd's own test run) and a user message (the stream,
    the project, the defect `problem`, and `work`: `roles.coder.coder_review_text`)."""
    variables = project_variables(project)
    variables["file_tree"] = project.tree_for_prompt(FIX_TREE_CHARS)
    messages = render_messages(
        "code_fix.md",
        stream=stream,
        goal_line=one_line(goal_line),
        rules=rules,
        problem=problem,
        work=clip_text(work.strip() or "(nothing recorded)", WORK_CHARS, what="the work"),
        max_steps=max_steps,
        **variables,
    )
    return [dict(message) for message in messages]
