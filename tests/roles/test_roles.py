"""The three roles in process, on a scripted model: the planner's repair loop, the
orchestrator's verdicts and fixes, the executor's replies. No HTTP: each test takes
milliseconds, beside the end-to-end tests that run the same roles through the simulator."""

from __future__ import annotations

from typing import Any

import pytest
from support.scripted import ScriptedCaller

from roles import orchestrator
from roles.executor import execute
from roles.models.errors import ModelCallError, ModelOutputError
from roles.plan.schema import Plan, Review, StreamSpec
from roles.plan.validator import PlanRules
from roles.planner import make_plan
from roles.prompts import PromptRules


def spec(stream_id: str, deps: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "id": stream_id,
        "title": f"Stream {stream_id}",
        "job": f"Do {stream_id}.",
        "output_definition": f"The {stream_id} part.",
        "ownership": [f"{stream_id}/"],
        "depends_on": deps or [],
        "acceptance_check": "It is there.",
        **fields,
    }


GOOD = {"summary": "two parts", "streams": [spec("a"), spec("b", ["a"])]}
CYCLE = {"streams": [spec("a", ["b"]), spec("b", ["a"])]}
STREAM = StreamSpec.model_validate(spec("s1"))
RULES = PromptRules(split_depth_left=1)


# --- the planner ---------------------------------------------------------------------------------


async def test_an_invalid_plan_goes_back_to_the_planner_with_the_validators_message() -> None:
    model = ScriptedCaller({"plan:*": [CYCLE, GOOD]})
    outcome = await make_plan(model, "Goal", "", RULES, PlanRules(), max_attempts=3)
    assert outcome.plan is not None and outcome.attempts == 2
    assert [s.id for s in outcome.plan.streams] == ["a", "b"]
    assert model.keys() == ["plan:0", "plan:1"]
    retry = model.of("plan:1")[0]
    assert retry.round == 1 and retry.response_model is Plan
    assert "cycle: a -> b -> a" in retry.prompt
    assert '"id": "a"' in retry.prompt  # the rejected plan is shown beside the message


async def test_an_answer_that_never_parses_counts_as_an_attempt() -> None:
    model = ScriptedCaller({"plan:0": "{not json", "plan:*": GOOD})
    outcome = await make_plan(model, "Goal", "", RULES, PlanRules(), max_attempts=2)
    assert outcome.plan is not None and outcome.attempts == 2
    assert "the answer was not a valid plan" in model.of("plan:1")[0].prompt


async def test_a_plan_that_never_validates_reports_the_last_problems() -> None:
    model = ScriptedCaller({"plan:*": CYCLE})
    outcome = await make_plan(model, "Goal", "", RULES, PlanRules(), max_attempts=3)
    assert outcome.plan is None and outcome.attempts == 3
    assert any("cycle" in p for p in outcome.problems)


async def test_a_model_nobody_reaches_ends_the_planning_at_once() -> None:
    down = ModelCallError("planner/plan: every attempt failed on gpt-5 (4 attempts)")
    model = ScriptedCaller({"plan:*": down})
    with pytest.raises(ModelCallError, match="every attempt failed"):
        await make_plan(model, "Goal", "", RULES, PlanRules(), max_attempts=3)
    assert model.keys() == ["plan:0"]  # not retried as if the plan were invalid


async def test_coupled_areas_split_across_streams_go_back_with_the_reason() -> None:
    split = {"streams": [spec("auth"), spec("db")]}
    whole = {"streams": [spec("core", ownership=["auth/", "db/"])]}
    coupled = [["auth/", "db/"]]
    model = ScriptedCaller({"plan:*": [split, whole]})
    outcome = await make_plan(
        model, "Goal", "", PromptRules(coupled=coupled), PlanRules(coupled=coupled), 3
    )
    assert outcome.plan is not None and [s.id for s in outcome.plan.streams] == ["core"]
    assert "coupled areas auth/ and db/ are split across streams 'auth' and 'db'" in (
        model.of("plan:1")[0].prompt
    )


# --- the orchestrator ----------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", ["accept", "fix", "redo", "escalate"])
async def test_review_returns_the_verdict_under_the_rounds_key(verdict: str) -> None:
    model = ScriptedCaller({"review:s1:r2": {"verdict": verdict, "reason": "because"}})
    review = await orchestrator.review(model, STREAM, "the output", RULES, round=2)
    assert (review.verdict, review.reason) == (verdict, "because")
    (call,) = model.calls
    assert (call.role, call.stream_id, call.round) == ("orchestrator", "s1", 2)
    assert "the output" in call.prompt


async def test_a_fix_carried_by_the_review_costs_no_call() -> None:
    model = ScriptedCaller()
    verdict = Review(verdict="fix", reason="typo", fixed_output="the fixed output")
    assert await orchestrator.fix(model, STREAM, "teh output", verdict, RULES, round=0) == (
        "the fixed output"
    )
    assert model.calls == []


@pytest.mark.parametrize(
    ("answer", "fixed"),
    [
        ('{"verdict": "fix", "reason": "typo", "fixed_output": "corrected"}', "corrected"),
        ("corrected as plain text", "corrected as plain text"),
        ("   ", "teh output"),  # nothing usable: the output stays as it was
    ],
)
async def test_a_fix_takes_a_review_or_the_corrected_text(answer: str, fixed: str) -> None:
    model = ScriptedCaller({"fix:s1:r1": answer})
    verdict = Review(verdict="fix", reason="typo")
    assert await orchestrator.fix(model, STREAM, "teh output", verdict, RULES, round=1) == fixed
    assert model.keys() == ["fix:s1:r1"]


async def test_a_conflict_answer_that_never_parses_is_a_model_output_error() -> None:
    model = ScriptedCaller({"conflicts:*": "{'conflicts': [oops"})
    plan = Plan.model_validate(GOOD)
    with pytest.raises(ModelOutputError, match=r"orchestrator/conflicts: .*ConflictReport"):
        await orchestrator.check_conflicts(
            model, "Goal", plan, {"a": "A", "b": "B"}, RULES, round=0
        )


# --- the executor --------------------------------------------------------------------------------


async def test_a_split_past_the_depth_limit_is_taken_as_a_plain_output() -> None:
    model = ScriptedCaller(
        {"exec:s1:*": {"kind": "split", "output": "did it whole", "streams": [spec("x")]}}
    )
    reply = await execute(
        model, STREAM, "Goal", {}, RULES, round=0, feedback=None, answers=None, may_split=False
    )
    assert (reply.kind, reply.output) == ("output", "did it whole")
    assert model.keys() == ["exec:s1:r0:a0"]


async def test_the_executor_sees_its_dependencies_feedback_and_answers() -> None:
    model = ScriptedCaller()
    reply = await execute(
        model,
        STREAM,
        "Goal",
        {"dep": "THE DEPENDENCY'S OUTPUT"},
        RULES,
        round=1,
        feedback="MAKE IT LONGER",
        answers={"Which market?": "THE NORDICS"},
        may_split=True,
        attempt=2,
    )
    assert reply.output == "Output of stream 's1'"
    (call,) = model.calls
    assert call.key == "exec:s1:r1:a2"
    for seen in ("THE DEPENDENCY'S OUTPUT", "MAKE IT LONGER", "THE NORDICS"):
        assert seen in call.prompt
