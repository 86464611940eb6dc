"""Role prompts: jinja2 templates in `prompts/` rendered into chat messages.

The wording lives in text files (`prompts/planner.md`, `executor.md`, `coder.md`, `code_fix.md`,
`review.md`, `conflicts.md`, `fix.md`, `merge.md`) so it can be read and tuned without touching
code; this module only finds them, renders them and returns the messages. Each template has a
`system` block and a `user` block; text outside the blocks is a comment for prompt editors.

The premium prompts (the planner's and the orchestrator's: plan, review, fix, conflicts,
merge, code fix) are a stable prefix, then a variable tail, so that a provider's prompt cache
serves the prefix to all of one task's premium calls (OpenAI caches a prefix of 1,024 tokens
or more by itself; Anthropic where `roles.models.prompt_cache` marks it). They render as three
messages: the `system` block, which is the one orchestrator text of `_orchestrator.md` for
all of them; a `prefix` block, the task's material (`_task_prefix.md`: the developer's rules,
the goal, the context, a code task's repository and, once it exists, the plan), as the first
user message; and the `user` block, the call's own request (the stream, its output, the
answer's shape), as the second. The planner's system and prefix messages are the same bytes
as every later call's, whose prefix only adds the plan after them: `TaskBrief` is that
material, and `roles.models.prompt_cache.prefix_end` says where a prompt's prefix ends. A
template without a `prefix` block (the executor's, the coder's) renders as a system and a
user message.

What each role sees is decided here, by the variables passed: the executor gets only its own
stream, its direct dependencies' outputs and a one-line goal, never the plan, so its prompt does
not grow with the number of streams. A review's request is lean: the stream's definition, its
inputs one line each, and the output (the rest is in the cached prefix). A task's attachments
(`roles.models.content`) go to the planner all (in its request, after the prefix), to an
executor only its stream's: their text in the prompt, their images as image parts of the user
message when the role's model sees images, else the planner's description.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from roles.models.content import AttachmentContent, Picture, with_pictures
from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import PARALLELIZE_MODES, Parallelize, PlanRules
from roles.project import ProjectContext

__all__ = [
    "TEMPLATE_NAMES",
    "Message",
    "PromptRules",
    "TaskBrief",
    "conflicts_messages",
    "executor_messages",
    "fix_messages",
    "goal_line",
    "merge_messages",
    "one_line",
    "pictures_of",
    "planner_messages",
    "project_variables",
    "prompts_dir",
    "render_messages",
    "review_messages",
]

#: A chat message: its content is a string, or a list of content parts when it carries images.
Message = dict[str, Any]

#: The role templates (partials starting with "_" are included by them, never rendered alone).
TEMPLATE_NAMES: tuple[str, ...] = (
    "planner.md",
    "executor.md",
    "coder.md",
    "code_fix.md",
    "review.md",
    "conflicts.md",
    "fix.md",
    "merge.md",
)

#: A dependency's output as a review's request shows it: one line, this long at most.
INPUT_LINE_CHARS = 160

#: Longest goal line shown to executors and reviewers: enough to orient, small enough that the
#: prompt size does not depend on how long the user's goal is.
GOAL_LINE_CHARS = 200


@dataclass
class PromptRules:
    """The rules as the prompts state them (from the `[rules]` and `[plan]` config tables).

    `tests_first` is the already-decided flag for this task (normally the config's wish and
    `is_code_shaped(goal)`), so the prompt states exactly the rule the validator will enforce;
    left as None it is decided by `code`: on for code tasks, off otherwise. `to_plan_rules`
    gives the validator the same rules. `split_depth_left` is how many more levels of
    splitting are allowed below the stream being prompted: 0 means it may not split. `code`
    marks a code task (a repository, streams owning path globs): the prompts speak of files,
    diffs and test runs, and the validator checks globs.
    """

    instructions: list[str] = field(default_factory=list)
    parallelize: Parallelize = "when-possible"
    coupled: list[list[str]] = field(default_factory=list)
    max_streams: int = 8
    tests_first: bool | None = None
    split_depth_left: int = 0
    code: bool = False

    def __post_init__(self) -> None:
        if self.tests_first is None:
            # Code tasks write the tests that pin the behaviour down before implementing it.
            self.tests_first = self.code
        # The planner prompt explains the mode in words; an unknown mode would silently fall
        # through to the "when-possible" wording.
        if self.parallelize not in PARALLELIZE_MODES:
            raise ValueError(
                f"parallelize must be one of {', '.join(PARALLELIZE_MODES)}, "
                f"not {self.parallelize!r}"
            )

    def to_plan_rules(self) -> PlanRules:
        """The validator's view of the same rules."""
        return PlanRules(
            max_streams=self.max_streams,
            coupled=[list(group) for group in self.coupled],
            parallelize=self.parallelize,
            require_tests_first=bool(self.tests_first),
            code=self.code,
        )


@dataclass(frozen=True)
class TaskBrief:
    """What every premium prompt of one task starts with, after the shared system text: the
    rules, the goal, its context, a code task's repository, and the plan once it exists.

    Built once per task and handed to each premium prompt, so that their prefixes are the
    same bytes; `with_plan` adds the plan after planning.
    """

    goal: str
    rules: PromptRules
    context: str = ""
    plan: Plan | None = None
    project: ProjectContext | None = None

    def with_plan(self, plan: Plan) -> TaskBrief:
        return replace(self, plan=plan)

    def variables(self) -> dict[str, Any]:
        """What `_orchestrator.md` and `_task_prefix.md` read."""
        return {
            "rules": self.rules,
            "goal": self.goal,
            "context": self.context,
            "plan": self.plan,
            **project_variables(self.project),
        }


# --- loading --------------------------------------------------------------------------------


def prompts_dir() -> Path:
    """Where the templates are: `<repo>/prompts` in a checkout, `roles/_prompts` in a wheel.

    The checkout location is only used if it really holds the templates, so an unrelated
    `prompts` directory next to an installed `roles` package (site-packages) is not picked up.
    """
    checkout = Path(__file__).resolve().parent.parent / "prompts"
    if (checkout / "planner.md").is_file():
        return checkout
    return Path(__file__).resolve().parent / "_prompts"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(prompts_dir()),
        # A missing variable is a bug in this module, not something to render as "".
        undefined=jinja2.StrictUndefined,
        # Prompts are plain text: escaping would corrupt code and quotes in outputs.
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates are read once per process; a daemon does not re-stat files per call.
        auto_reload=False,
    )


@functools.cache
def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def render_messages(name: str, **variables: Any) -> list[Message]:
    """The messages of template `name` rendered with `variables`: system and user, with the
    prefix's user message between them when the template has a `prefix` block."""
    return _messages(name, **variables)


def _messages(name: str, **variables: Any) -> list[Message]:
    template = _template(name)
    messages: list[Message] = []
    blocks = ("system", "prefix", "user") if "prefix" in template.blocks else ("system", "user")
    for block in blocks:
        render_block = template.blocks[block]
        content = "".join(render_block(template.new_context(variables)))
        # Conditional sections leave runs of blank lines behind; one blank line is enough.
        # (A prefix stays a prefix: only the runs are touched, and the ends are stripped.)
        content = re.sub(r"\n{3,}", "\n\n", content).strip()
        messages.append({"role": "system" if block == "system" else "user", "content": content})
    return messages


def goal_line(goal: str) -> str:
    """The goal's first line (at most 300 characters): all an executor is told of the goal."""
    return goal.strip().splitlines()[0][:300]


def one_line(text: str, limit: int = GOAL_LINE_CHARS) -> str:
    """`text` on one line (whitespace collapsed), cut to `limit` characters with an ellipsis."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[: max(0, limit - 1)].rstrip() + "…"


# --- one function per role prompt -----------------------------------------------------------


def planner_messages(
    goal: str,
    context: str,
    rules: PromptRules,
    previous_error: str | None = None,
    *,
    previous_plan: Plan | str | None = None,
    project: ProjectContext | None = None,
    attachments: Sequence[AttachmentContent] = (),
    planner_sees_images: bool = False,
    executors_see_images: bool = False,
) -> list[Message]:
    """The planner's prompt; on a retry, `previous_error` is the validator's message.

    `previous_plan` (optional) is the rejected plan, shown with the error so the planner can
    correct it rather than start over: the validator's messages refer to its stream ids.
    `project` (a code task) adds the repository: its file tree, the project's own
    instructions, its commands, and how ownership globs work. `attachments` are all of the
    task's: their text is in the prompt, their pictures are image parts when
    `planner_sees_images`; `executors_see_images` says whether the plan must describe them.
    """
    if isinstance(previous_plan, Plan):
        previous_plan = _plan_json(previous_plan)
    brief = TaskBrief(goal, rules, context, project=project)
    messages = _messages(
        "planner.md",
        **brief.variables(),
        previous_error=previous_error,
        previous_plan=previous_plan if previous_error else None,
        attachments=list(attachments),
        planner_sees_images=planner_sees_images,
        executors_see_images=executors_see_images,
    )
    return with_pictures(messages, pictures_of(attachments) if planner_sees_images else [])


def _plan_json(plan: Plan) -> str:
    """A plan as the planner wrote it: without what tierd adds (how attachments are
    delivered), and without empty attachment lists (a plan of a task without attachments
    reads as it did before they existed)."""
    exclude: dict[str, Any] = {
        "streams": {
            index: {"attachment_delivery"} | (set() if stream.attachments else {"attachments"})
            for index, stream in enumerate(plan.streams)
        }
    }
    if not plan.attachments:
        exclude["attachments"] = True
    return plan.model_dump_json(indent=2, exclude=exclude)


def pictures_of(attachments: Sequence[AttachmentContent]) -> list[Picture]:
    """The image parts of these attachments, in order."""
    return [picture for attachment in attachments for picture in attachment.pictures]


def project_variables(project: ProjectContext | None) -> dict[str, Any]:
    """What the templates read of a code task's repository (all empty for a text task)."""
    if project is None:
        return {"project": None, "file_tree": "", "project_instructions": "", "commands": {}}
    return {
        "project": project,
        "file_tree": project.tree_for_prompt(),
        "project_instructions": project.instructions_for_prompt(),
        "commands": project.commands(),
    }


def executor_messages(
    stream: StreamSpec,
    goal_line: str,
    dep_outputs: Mapping[str, str],
    rules: PromptRules,
    feedback: str | None = None,
    answers: Mapping[str, str] | None = None,
    may_split: bool = False,
    *,
    previous_output: str | None = None,
    attachments: Sequence[AttachmentContent] = (),
    show_images: bool = False,
    descriptions: Mapping[str, str] | None = None,
) -> list[Message]:
    """An executor's prompt: its own stream only, plus its direct dependencies' outputs.

    `dep_outputs` maps stream id to output; pass only the stream's direct dependencies (they
    are shown in `depends_on` order, any others after them). `answers` maps each question the
    executor asked to the human's answer. `may_split` is honoured only while
    `rules.split_depth_left > 0`. On a redo, `feedback` is the reviewer's and `previous_output`
    (optional) the output that was sent back. `attachments` are the stream's own: their
    text is in the prompt, their pictures image parts when `show_images` (the executor's
    model sees images), else `descriptions` (the planner's, by name) stand in for them.
    """
    ordered = {dep: dep_outputs[dep] for dep in stream.depends_on if dep in dep_outputs}
    ordered.update({key: value for key, value in dep_outputs.items() if key not in ordered})
    messages = _messages(
        "executor.md",
        stream=stream,
        goal_line=one_line(goal_line),
        dep_outputs=ordered,
        rules=rules,
        feedback=feedback,
        previous_output=previous_output if feedback else None,
        answers=dict(answers or {}),
        may_split=may_split and rules.split_depth_left > 0,
        sub_split_depth=max(0, rules.split_depth_left - 1),
        attachments=list(attachments),
        show_images=show_images,
        descriptions=dict(descriptions or {}),
    )
    return with_pictures(messages, pictures_of(attachments) if show_images else [])


def _brief(
    brief: TaskBrief | None,
    rules: PromptRules,
    goal: str,
    project: ProjectContext | None = None,
) -> TaskBrief:
    """The task's brief, or, for a caller that has none, one of what it passed: the same
    prompt layout, without the planner's context or the plan (no shared prefix then)."""
    return brief if brief is not None else TaskBrief(goal, rules, project=project)


def _inputs(
    stream: StreamSpec, plan: Plan | None, inputs: Mapping[str, str] | None
) -> list[tuple[str, str, str]]:
    """A review's inputs: each dependency of `stream` as (id, title, its output on one line)."""
    titles = {s.id: s.title for s in plan.streams} if plan else {}
    given = inputs or {}
    deps = list(stream.depends_on) + [d for d in given if d not in stream.depends_on]
    return [
        (
            dep,
            titles.get(dep, ""),
            one_line(given[dep], INPUT_LINE_CHARS) if dep in given else "(output not shown)",
        )
        for dep in deps
    ]


def review_messages(
    stream: StreamSpec,
    output: str,
    rules: PromptRules,
    *,
    goal_line: str | None = None,
    can_fix: bool | None = None,
    project: ProjectContext | None = None,
    brief: TaskBrief | None = None,
    inputs: Mapping[str, str] | None = None,
) -> list[Message]:
    """The orchestrator's review of one stream's output; the answer is a `Review`.

    `brief` is the task's (`TaskBrief` with the plan): the prompt then starts with the same
    bytes as every premium call of the task. Without it, `goal_line` and `project` stand in.
    `inputs` maps the stream's dependencies to their outputs, each shown on one line.
    For a code task (`rules.code`) `output` is `roles.coder.coder_review_text` and the prompt
    holds the review to the recorded facts (exit codes, diff) over the executor's summary.
    `can_fix` offers the "fix" verdict; by default on for text tasks and off for code tasks
    (fixing a code stream needs the orchestrator's own tool loop).
    """
    task = _brief(brief, rules, one_line(goal_line or ""), project)
    return _messages(
        "review.md",
        **task.variables(),
        stream=stream,
        output=output,
        can_fix=not rules.code if can_fix is None else can_fix,
        inputs=_inputs(stream, task.plan, inputs),
    )


def conflicts_messages(
    goal: str,
    plan: Plan,
    outputs: Mapping[str, str],
    *,
    context: str = "",
    rules: PromptRules | None = None,
    brief: TaskBrief | None = None,
) -> list[Message]:
    """The orchestrator's look at all outputs together; the answer is a `ConflictReport`.

    `brief` is the task's; without it one is made of `goal`, `context`, `rules` and `plan`."""
    task = brief or TaskBrief(goal, rules or PromptRules(), context, plan)
    return _messages(
        "conflicts.md",
        **task.with_plan(plan).variables(),
        outputs=dict(outputs),
    )


def fix_messages(
    stream: StreamSpec,
    output: str,
    problem: str,
    rules: PromptRules,
    *,
    goal_line: str | None = None,
    brief: TaskBrief | None = None,
) -> list[Message]:
    """The orchestrator fixes a small defect (`problem`) itself; the answer is a `Review`
    with verdict "fix" and the corrected output (or "redo" if the defect is too large)."""
    task = _brief(brief, rules, one_line(goal_line or ""))
    return _messages(
        "fix.md",
        **task.variables(),
        stream=stream,
        output=output,
        problem=problem,
    )


def merge_messages(
    goal: str,
    plan: Plan,
    outputs: Mapping[str, str],
    rules: PromptRules,
    feedback: str | None = None,
    *,
    context: str = "",
    previous_result: str | None = None,
    brief: TaskBrief | None = None,
) -> list[Message]:
    """The merge point: recombine the accepted `outputs` following `plan.merge_instruction`.

    The answer is the merged result as plain text. For a revision, `feedback` is the human's
    rejection comment and `previous_result` (optional) the result they rejected. `brief` is
    the task's; without it one is made of `goal`, `context`, `rules` and `plan`.
    """
    task = brief or TaskBrief(goal, rules, context, plan)
    return _messages(
        "merge.md",
        **task.with_plan(plan).variables(),
        outputs=dict(outputs),
        feedback=feedback,
        previous_result=previous_result if feedback else None,
    )
