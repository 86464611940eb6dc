"""Tests for the role prompts: templates render, carry the rules, and show each role only what
it should see."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
from pydantic import BaseModel

from roles import prompts
from roles.code_fix import code_fix_messages
from roles.coder import coder_messages
from roles.plan.schema import ConflictReport, ExecutorReply, Plan, Review, StreamSpec
from roles.plan.validator import PlanRules
from roles.project import ProjectContext
from roles.prompts import (
    TEMPLATE_NAMES,
    PromptRules,
    conflicts_messages,
    executor_messages,
    fix_messages,
    merge_messages,
    one_line,
    planner_messages,
    prompts_dir,
    review_messages,
)

RULES = PromptRules(
    instructions=["Use British spelling.", "Never add a new dependency."],
    parallelize="when-possible",
    coupled=[["auth/", "db/"]],
    max_streams=6,
    tests_first=True,
    split_depth_left=2,
)


def stream(stream_id: str, **fields: Any) -> StreamSpec:
    values: dict[str, Any] = {
        "title": f"Title of {stream_id}",
        "job": f"Job of {stream_id}.",
        "output_definition": f"Output definition of {stream_id}.",
        "instructions": f"Instructions of {stream_id}.",
        "acceptance_check": f"Acceptance check of {stream_id}.",
        "ownership": [f"area/{stream_id}/"],
    }
    values.update(fields)
    return StreamSpec(id=stream_id, **values)


def wide_plan(count: int) -> Plan:
    """`count` streams; the last one ('target') depends on the first two."""
    streams = [stream(f"s{i}") for i in range(count - 1)]
    streams.append(stream("target", depends_on=["s0", "s1"]))
    return Plan(summary="wide", streams=streams, merge_instruction="Join them.")


def text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(message["content"] for message in messages)


def json_blocks(content: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", content, re.S)]


def all_messages() -> dict[str, list[dict[str, Any]]]:
    """Every role prompt rendered with every optional part switched on."""
    target = stream("target", depends_on=["s0"])
    plan = wide_plan(3)
    outputs = {s.id: f"OUTPUT OF {s.id}" for s in plan.streams}
    return {
        "planner.md": planner_messages(
            "Goal text", "Context text", RULES, "ERROR TEXT", previous_plan=plan
        ),
        "executor.md": executor_messages(
            target,
            "Goal text",
            {"s0": "DEP OUTPUT"},
            RULES,
            feedback="FEEDBACK TEXT",
            answers={"Which?": "That one."},
            may_split=True,
            previous_output="PREVIOUS OUTPUT",
        ),
        "coder.md": coder_messages(
            target,
            "Goal text",
            {"s0": "DEP SUMMARY"},
            RULES,
            ProjectContext.build(["src/a.py"], {"AGENTS.md": "Use tabs."}, test_command="make"),
            "FEEDBACK TEXT",
            {"Which?": "That one."},
            previous_summary="PREVIOUS SUMMARY",
            max_steps=30,
        ),
        "code_fix.md": code_fix_messages(
            target,
            "Goal text",
            RULES,
            ProjectContext.build(["src/a.py"], {"AGENTS.md": "Use tabs."}, test_command="make"),
            "DEFECT TEXT",
            "WORK TEXT",
            max_steps=8,
        ),
        "review.md": review_messages(target, "OUTPUT TEXT", RULES, goal_line="Goal text"),
        "conflicts.md": conflicts_messages(
            "Goal text", plan, outputs, context="Context text", rules=RULES
        ),
        "fix.md": fix_messages(target, "OUTPUT TEXT", "DEFECT TEXT", RULES, goal_line="Goal"),
        "merge.md": merge_messages(
            "Goal text",
            plan,
            outputs,
            RULES,
            "HUMAN FEEDBACK",
            context="Context text",
            previous_result="PREVIOUS RESULT",
        ),
    }


# --- loading and rendering ------------------------------------------------------------------


def test_prompts_dir_is_the_checkout_and_holds_every_template() -> None:
    directory = prompts_dir()
    assert directory == Path(prompts.__file__).resolve().parent.parent / "prompts"
    for name in TEMPLATE_NAMES:
        assert (directory / name).is_file(), name


def test_prompts_dir_falls_back_to_the_wheel_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed from a wheel: roles/_prompts holds the templates; a stray site-packages/prompts
    # without them must not be picked.
    (tmp_path / "prompts").mkdir()
    monkeypatch.setattr(prompts, "__file__", str(tmp_path / "roles" / "prompts.py"))
    assert prompts_dir() == tmp_path / "roles" / "_prompts"
    (tmp_path / "prompts" / "planner.md").write_text("x")
    assert prompts_dir() == tmp_path / "prompts"


#: The premium prompts: the shared system text, the task's material, then the request.
PREMIUM = ("planner.md", "code_fix.md", "review.md", "conflicts.md", "fix.md", "merge.md")


def request(messages: list[dict[str, Any]]) -> str:
    """The call's own request: the last message (after the prefix, for a premium prompt)."""
    return str(messages[-1]["content"])


def test_every_template_renders_a_system_and_a_user_message() -> None:
    rendered = all_messages()
    assert set(rendered) == set(TEMPLATE_NAMES)
    for name, messages in rendered.items():
        roles = ["system", "user", "user"] if name in PREMIUM else ["system", "user"]
        assert [m["role"] for m in messages] == roles, name
        for message in messages:
            assert message["content"].strip(), name
            # No template syntax or editor comments leak into what the model reads.
            for marker in ("{{", "{%", "{#", "Variables:"):
                assert marker not in message["content"], (name, marker)
            assert "\n\n\n" not in message["content"], name


def test_a_missing_variable_is_an_error_not_blank_text() -> None:
    with pytest.raises(jinja2.UndefinedError):
        prompts._messages("planner.md", goal="only the goal")


# The example answers in the prompts must parse as the schemas the replies are parsed with.
@pytest.mark.parametrize(
    ("name", "schema", "count"),
    [
        ("planner.md", Plan, 1),
        ("executor.md", ExecutorReply, 3),
        ("review.md", Review, 1),
        ("conflicts.md", ConflictReport, 1),
        ("fix.md", Review, 1),
    ],
)
def test_json_examples_match_the_schemas(name: str, schema: type[BaseModel], count: int) -> None:
    # A premium prompt's answer shape is in its request (its system text is shared).
    messages = all_messages()[name]
    blocks = json_blocks(request(messages) if name in PREMIUM else messages[0]["content"])
    assert len(blocks) == count
    for block in blocks:
        schema.model_validate(block)
        # Every key shown exists in the schema: no invented field names.
        assert set(block) <= set(schema.model_fields)


def test_example_plan_in_planner_prompt_is_valid_under_tests_first() -> None:
    from roles.plan.validator import validate_plan

    example = Plan.model_validate(json_blocks(request(all_messages()["planner.md"]))[0])
    assert validate_plan(example, RULES.to_plan_rules()) == []


# --- planner --------------------------------------------------------------------------------


def test_planner_prompt_states_every_rule() -> None:
    content = text(planner_messages("Add a login form", "The app uses Flask.", RULES))
    assert "Add a login form" in content
    assert "The app uses Flask." in content
    assert "- Use British spelling." in content
    assert "- Never add a new dependency." in content
    assert "auth/, db/" in content
    assert "At most 6 streams" in content
    assert "Tests first" in content
    assert "Split only parts that are truly independent" in content


def test_planner_prompt_explains_each_parallelize_mode_differently() -> None:
    wordings = {}
    for mode in ("never", "when-possible", "always"):
        rules = PromptRules(parallelize=mode)  # type: ignore[arg-type]
        wordings[mode] = planner_messages("g", "", rules)[1]["content"]  # the rules: prefix
    assert "strictly sequential chain" in wordings["never"]
    assert "Split as widely as the rules allow" in wordings["always"]
    assert len(set(wordings.values())) == 3


def test_planner_prompt_omits_tests_first_and_coupled_when_not_set() -> None:
    content = text(planner_messages("g", "", PromptRules()))
    assert "Tests first" not in content
    assert "No coupled areas" in content
    assert "Rules from the developer: none." in content
    assert "Context:\n(none)" in content


def test_previous_error_appears_only_on_retry() -> None:
    first = text(planner_messages("g", "c", RULES))
    assert "Your previous plan was rejected" not in first
    retry = text(
        planner_messages(
            "g",
            "c",
            RULES,
            previous_error="stream 'b' depends on unknown stream 'z'",
            previous_plan='{"streams": "THE OLD PLAN"}',
        )
    )
    assert "Your previous plan was rejected" in retry
    assert "stream 'b' depends on unknown stream 'z'" in retry
    assert "THE OLD PLAN" in retry


def test_prompt_rules_and_plan_rules_agree() -> None:
    assert RULES.to_plan_rules() == PlanRules(
        max_streams=6, coupled=[["auth/", "db/"]], require_tests_first=True
    )


# --- executor -------------------------------------------------------------------------------


def test_executor_prompt_has_its_stream_rules_and_dependency_outputs() -> None:
    target = stream("target", depends_on=["s0", "s1"])
    content = text(
        executor_messages(
            target, "Build the thing", {"s1": "ONE OUTPUT", "s0": "ZERO OUTPUT"}, RULES
        )
    )
    for expected in (
        "Title of target",
        "Job of target.",
        "Instructions of target.",
        "Output definition of target.",
        "area/target/",
        "Acceptance check of target.",
        "- Use British spelling.",
        "Build the thing",
        "ZERO OUTPUT",
        "ONE OUTPUT",
    ):
        assert expected in content, expected
    # Dependency outputs follow depends_on order, whatever order the dict had.
    assert content.index("ZERO OUTPUT") < content.index("ONE OUTPUT")
    assert "FEEDBACK" not in content and "Answers to your questions" not in content


def test_executor_prompt_does_not_grow_with_the_plan() -> None:
    renders = {}
    for count in (3, 20):
        plan = wide_plan(count)
        target = plan.streams[-1]
        outputs = {s.id: f"OUTPUT OF {s.id}" for s in plan.streams}
        direct = {dep: outputs[dep] for dep in target.depends_on}
        renders[count] = text(executor_messages(target, "Goal", direct, RULES))
        # Only direct dependencies' outputs, never another stream's spec or output.
        assert "OUTPUT OF s0" in renders[count] and "OUTPUT OF s1" in renders[count]
        for other in plan.streams[2:-1]:
            assert other.id not in renders[count]
            assert f"Job of {other.id}." not in renders[count]
    assert renders[3] == renders[20]


def test_executor_goal_is_one_short_line() -> None:
    long_goal = "Line one\nline two " + "word " * 200
    content = executor_messages(stream("a"), long_goal, {}, RULES)[1]["content"]
    goal_line = content.splitlines()[0]
    assert goal_line.startswith("The task's goal, for orientation: Line one line two")
    assert goal_line.endswith("…")
    assert len(goal_line) < 300
    assert one_line("  a \n b  ") == "a b"


def test_executor_feedback_answers_and_previous_output() -> None:
    content = text(
        executor_messages(
            stream("a"),
            "g",
            {},
            RULES,
            feedback="Add the error cases.",
            answers={"Which database?": "Postgres."},
            previous_output="THE OLD OUTPUT",
        )
    )
    assert "Add the error cases." in content
    assert "Which database?" in content and "Postgres." in content
    assert "THE OLD OUTPUT" in content


def test_executor_split_offered_only_with_depth_left() -> None:
    def system(may_split: bool, depth: int) -> str:
        rules = PromptRules(split_depth_left=depth, coupled=[["auth/", "db/"]])
        return executor_messages(stream("a"), "g", {}, rules, may_split=may_split)[0]["content"]

    allowed = system(True, 2)
    assert '"kind": "split"' in allowed
    assert "at most 1 more time." in allowed
    assert "auth/, db/" in allowed  # coupled groups matter when it splits
    assert "cannot be split any further" in system(True, 1)
    for refused in (system(False, 2), system(True, 0)):
        assert '"kind": "split"' not in refused
        assert "Do not propose a split" in refused


# --- review, fix, conflicts, merge ----------------------------------------------------------


def test_review_prompt_has_the_output_and_what_to_judge_it_by() -> None:
    content = text(review_messages(stream("a"), "THE OUTPUT", RULES, goal_line="Goal"))
    for expected in (
        "THE OUTPUT",
        "Output definition of a.",
        "Acceptance check of a.",
        "- Use British spelling.",
        '"accept"',
        '"escalate"',
    ):
        assert expected in content, expected


def test_fix_prompt_has_the_defect() -> None:
    content = text(fix_messages(stream("a"), "THE OUTPUT", "The date is wrong.", RULES))
    assert "The date is wrong." in content and "THE OUTPUT" in content
    assert '"verdict": "fix"' in content


def test_conflicts_prompt_shows_all_outputs() -> None:
    plan = wide_plan(4)
    outputs = {"s0": "OUTPUT ZERO", "s1": "OUTPUT ONE", "s2": "OUTPUT TWO"}
    content = text(conflicts_messages("The goal", plan, outputs))
    for value in outputs.values():
        assert value in content
    assert "(no output)" in content  # 'target' has none
    assert "risk flags" in content
    # No rules passed: the shared prefix states the default rules (none from the developer).
    assert "Rules from the developer: none." in content


def test_merge_prompt_follows_plan_and_takes_feedback() -> None:
    plan = wide_plan(3)
    outputs = {"target": "OUTPUT T", "s0": "OUTPUT 0", "s1": "OUTPUT 1"}
    first = text(merge_messages("The goal", plan, outputs, RULES))
    assert "Merge instruction: Join them." in first
    # Outputs in plan order, not dict order.
    assert first.index("OUTPUT 0") < first.index("OUTPUT 1") < first.index("OUTPUT T")
    assert "A human rejected" not in first
    revision = text(merge_messages("The goal", plan, outputs, RULES, "Too long; keep one page."))
    assert "Too long; keep one page." in revision
    assert "A human rejected the previous merged result" in revision


# --- the premium prompts' shared prefix (provider prompt caching) ---------------------------


def brief_and_plan() -> tuple[prompts.TaskBrief, Plan]:
    plan = wide_plan(4)
    brief = prompts.TaskBrief("Goal text", RULES, "Context text")
    return brief, plan


def premium_prompts(code: bool = False) -> dict[str, list[dict[str, Any]]]:
    """One task's premium prompts: the plan, a review, a fix, the conflict check, the merge."""
    rules = PromptRules(code=True, instructions=["Keep the API."]) if code else RULES
    project = (
        ProjectContext.build(["src/a.py"], {"AGENTS.md": "Use tabs."}, test_command="make")
        if code
        else None
    )
    plan = wide_plan(4)
    brief = prompts.TaskBrief("Goal text", rules, "Context text", project=project)
    planned = brief.with_plan(plan)
    target = plan.streams[-1]
    outputs = {s.id: f"OUTPUT OF {s.id}" for s in plan.streams}
    return {
        "planner": planner_messages("Goal text", "Context text", rules, project=project),
        "review": review_messages(
            target, "THE OUTPUT", rules, brief=planned, inputs={"s0": outputs["s0"]}
        ),
        "review-other": review_messages(plan.streams[0], "ANOTHER OUTPUT", rules, brief=planned),
        "fix": fix_messages(target, "THE OUTPUT", "A slip.", rules, brief=planned),
        "conflicts": conflicts_messages(
            "Goal text", plan, outputs, context="Context text", rules=rules, brief=planned
        ),
        "merge": merge_messages(
            "Goal text", plan, outputs, rules, context="Context text", brief=planned
        ),
    }


@pytest.mark.parametrize("code", [False, True])
def test_a_tasks_premium_prompts_share_a_byte_identical_prefix(code: bool) -> None:
    rendered = premium_prompts(code)
    planner = rendered.pop("planner")
    planner_prefix = planner[0]["content"] + "\x00" + planner[1]["content"]
    later_prefixes = set()
    tails = set()
    for name, messages in rendered.items():
        assert [m["role"] for m in messages] == ["system", "user", "user"], name
        # The same system text for every job, byte for byte.
        assert messages[0]["content"] == planner[0]["content"], name
        prefix = messages[0]["content"] + "\x00" + messages[1]["content"]
        # The planner's prefix (system, rules, goal, context) starts every later one, which
        # adds only the plan.
        assert prefix.startswith(planner_prefix), name
        assert "The plan (its approach: wide), one stream a line" in messages[1]["content"], name
        assert "The plan" not in planner[1]["content"]
        later_prefixes.add(prefix)
        tails.add(messages[2]["content"])
    # After planning, every call has one prefix; each asks its own thing in its tail.
    assert len(later_prefixes) == 1
    assert len(tails) == len(rendered)
    # The material is in the prefix, never repeated in a tail.
    for messages in rendered.values():
        assert "Context text" in messages[1]["content"]
        assert "Context text" not in messages[2]["content"]


def test_the_prefix_is_a_prefix_of_the_whole_prompt_text() -> None:
    # What a provider sees is the messages in order: the planner's first two messages are the
    # first characters of every later call's prompt.
    rendered = premium_prompts()
    whole = {name: "\n".join(m["content"] for m in ms) for name, ms in rendered.items()}
    planner = rendered["planner"]
    start = planner[0]["content"] + "\n" + planner[1]["content"]
    for name, prompt in whole.items():
        assert prompt.startswith(start), name


def test_a_review_is_lean_its_stream_inputs_and_output_not_the_material_again() -> None:
    rendered = premium_prompts()
    tail = rendered["review"][2]["content"]
    for expected in (
        "Output definition of target.",
        "Acceptance check of target.",
        "Instructions of target.",
        '- "s0" (Title of s0): OUTPUT OF s0',
        '- "s1" (Title of s1): (output not shown)',
        "THE OUTPUT",
        '"escalate"',
    ):
        assert expected in tail, expected
    # Not the goal, the context, the rules or other streams' definitions: they are the prefix.
    for absent in ("Context text", "Goal text", "British spelling", "Job of s2."):
        assert absent not in tail, absent
    other = rendered["review-other"][2]["content"]
    assert "Its inputs: none" in other


def test_a_long_input_is_shown_on_one_short_line() -> None:
    plan = wide_plan(3)
    brief = prompts.TaskBrief("g", RULES).with_plan(plan)
    long_output = "first line\n" + "word " * 500
    messages = review_messages(
        plan.streams[-1], "OUT", RULES, brief=brief, inputs={"s0": long_output}
    )
    tail = messages[2]["content"]
    line = next(x for x in tail.splitlines() if x.startswith('- "s0"'))
    assert line.startswith('- "s0" (Title of s0): first line word')
    assert len(line) < 200 and line.endswith("…")
