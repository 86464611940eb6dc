"""The planner (premium tier): turns a goal into a validated plan.

The plan is checked in code by the validator; an invalid plan goes back to the planner with
the validator's message, a bounded number of times. An answer that never parsed as a plan
(`ModelOutputError`) counts as such an attempt; any other model error ends the planning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from roles.calls import Caller
from roles.models.content import AttachmentContent
from roles.models.errors import ModelOutputError
from roles.plan.schema import Plan
from roles.plan.validator import PlanRules, format_problems, validate_plan
from roles.project import ProjectContext
from roles.prompts import PromptRules, planner_messages


@dataclass
class PlanOutcome:
    plan: Plan | None
    attempts: int
    problems: list[str] = field(default_factory=list)


async def make_plan(
    call: Caller,
    goal: str,
    context: str,
    prompt_rules: PromptRules,
    plan_rules: PlanRules,
    max_attempts: int,
    *,
    project: ProjectContext | None = None,
    attachments: Sequence[AttachmentContent] = (),
    planner_sees_images: bool = False,
    executors_see_images: bool = False,
) -> PlanOutcome:
    """Ask for a plan until one passes the validator, at most `max_attempts` times.

    `project` makes it a code task's plan: the planner sees the repository (and `plan_rules`
    should have `code=True`, so ownership globs are checked). `attachments` are all of the
    task's (the planner sees them all, their images as image parts when
    `planner_sees_images`); `plan_rules` should name them, and list in `describe` those an
    executor cannot see (`executors_see_images` false), so the validator holds the plan to
    what the prompt asks.
    """
    previous_error: str | None = None
    previous_plan: Plan | str | None = None
    problems: list[str] = []
    for attempt in range(max_attempts):
        # The validator's message names stream ids: the planner needs its own plan beside it.
        messages = planner_messages(
            goal,
            context,
            prompt_rules,
            previous_error=previous_error,
            previous_plan=previous_plan,
            project=project,
            attachments=attachments,
            planner_sees_images=planner_sees_images,
            executors_see_images=executors_see_images,
        )
        try:
            out = await call(
                "planner",
                "plan",
                messages,
                key=f"plan:{attempt}",
                round=attempt,
                response_model=Plan,
            )
        except ModelOutputError as exc:  # the answer never parsed as a plan
            problems = [f"the answer was not a valid plan: {exc}"]
            previous_plan = None
        else:
            plan = Plan.model_validate(out.data)
            problems = validate_plan(plan, plan_rules)
            previous_plan = plan
            if not problems:
                return PlanOutcome(plan, attempt + 1)
        previous_error = format_problems(problems)
    return PlanOutcome(None, max_attempts, problems)
