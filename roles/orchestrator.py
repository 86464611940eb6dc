"""The orchestrator (premium tier): reviews every output itself, fixes small defects, checks
the outputs together for contradictions and recombines them at one merge point.

There is no separate reviewer agent: the model that owns the task judges the work.

Every call here takes the task's `TaskBrief` (`brief`: rules, goal, context, repository, plan):
its prompts then start with the same bytes as the planner's and each other's, which a
provider's prompt cache serves at a fraction of the price (see `roles.prompts`). A caller
without one still gets a working prompt, without that shared prefix.
"""

from __future__ import annotations

from roles.calls import Caller
from roles.plan.schema import ConflictReport, Plan, Review, StreamSpec
from roles.project import ProjectContext
from roles.prompts import (
    PromptRules,
    TaskBrief,
    conflicts_messages,
    fix_messages,
    merge_messages,
    review_messages,
)


async def review(
    call: Caller,
    stream: StreamSpec,
    output: str,
    rules: PromptRules,
    *,
    round: int,
    can_fix: bool | None = None,
    project: ProjectContext | None = None,
    brief: TaskBrief | None = None,
    inputs: dict[str, str] | None = None,
) -> Review:
    """One stream's verdict. For a code task `output` is `roles.coder.coder_review_text` and
    `can_fix` defaults to off (see `review_messages`); `project` adds the repository when
    there is no `brief`. `inputs`: the stream's dependencies' outputs (one line each)."""
    messages = review_messages(
        stream, output, rules, can_fix=can_fix, project=project, brief=brief, inputs=inputs
    )
    out = await call(
        "orchestrator",
        "review",
        messages,
        key=f"review:{stream.id}:r{round}",
        stream_id=stream.id,
        round=round,
        response_model=Review,
    )
    return Review.model_validate(out.data)


async def fix(
    call: Caller,
    stream: StreamSpec,
    output: str,
    verdict: Review,
    rules: PromptRules,
    *,
    round: int,
    brief: TaskBrief | None = None,
) -> str:
    """The orchestrator corrects a small defect itself instead of sending the stream back.

    A review that already carries the corrected output costs no further call.
    """
    if verdict.fixed_output:
        return verdict.fixed_output
    messages = fix_messages(stream, output, verdict.reason or "", rules, brief=brief)
    out = await call(
        "orchestrator",
        "fix",
        messages,
        key=f"fix:{stream.id}:r{round}",
        stream_id=stream.id,
        round=round,
    )
    # The prompt asks for a Review carrying the corrected output; a model that answers with
    # the corrected text alone has done the job too.
    try:
        fixed = Review.model_validate_json(out.text.strip())
    except ValueError:
        return out.text.strip() or output
    return fixed.fixed_output or output


async def check_conflicts(
    call: Caller,
    goal: str,
    plan: Plan,
    outputs: dict[str, str],
    rules: PromptRules,
    *,
    round: int,
    context: str = "",
    brief: TaskBrief | None = None,
) -> ConflictReport:
    messages = conflicts_messages(goal, plan, outputs, context=context, rules=rules, brief=brief)
    out = await call(
        "orchestrator",
        "conflicts",
        messages,
        key=f"conflicts:{round}",
        round=round,
        response_model=ConflictReport,
    )
    return ConflictReport.model_validate(out.data)


async def merge(
    call: Caller,
    goal: str,
    plan: Plan,
    outputs: dict[str, str],
    rules: PromptRules,
    *,
    revision: int,
    feedback: str | None = None,
    previous_result: str | None = None,
    context: str = "",
    brief: TaskBrief | None = None,
) -> str:
    messages = merge_messages(
        goal,
        plan,
        outputs,
        rules,
        feedback=feedback,
        context=context,
        previous_result=previous_result,
        brief=brief,
    )
    out = await call(
        "orchestrator",
        "merge",
        messages,
        key=f"merge:{revision}",
        round=revision,
    )
    return out.text
