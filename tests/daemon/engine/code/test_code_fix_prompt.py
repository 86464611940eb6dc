"""What the orchestrator is told when it fixes a code stream itself (`prompts/code_fix.md`)."""

from __future__ import annotations

from roles.code_fix import WORK_CHARS, code_fix_messages, fix_problem
from roles.plan.schema import Review, StreamSpec
from roles.project import ProjectContext
from roles.prompts import PromptRules

SPEC = StreamSpec(
    id="impl",
    title="Implement half",
    job="Add half() to src/feature.py",
    output_definition="half(x) returns x // 2",
    ownership=["src/**"],
    acceptance_check="tests/test_feature.py passes",
)
RULES = PromptRules(code=True, instructions=["Keep functions small."])


def project(test_command: str = "pytest -q") -> ProjectContext:
    return ProjectContext(
        file_tree="src/feature.py\ntests/test_feature.py",
        instructions="Use type hints.",
        test_command=test_command,
    )


def test_the_fix_prompt_names_the_defect_the_work_the_tools_and_the_budget() -> None:
    problem = fix_problem(Review(verdict="fix", reason="half() returns x; return x // 2"))
    work = "## Commands\n1. test: `pytest -q` -> exit 1 (FAILED)\n<diff>+return x</diff>"
    system, *asks = code_fix_messages(
        SPEC, "Add half()", RULES, project(), problem, work, max_steps=8
    )
    # The orchestrator's shared prefix (rules, goal, repository) then the fix's own request.
    assert system["role"] == "system" and [m["role"] for m in asks] == ["user", "user"]
    user = {"content": "\n\n".join(m["content"] for m in asks)}
    # The fix's own instructions come in its request, after the shared prefix.
    text = system["content"] + "\n\n" + asks[-1]["content"]
    assert "orchestrator" in text and "at most 8 steps" in text
    assert "run_command" in text and "tierd runs the test command itself" in text
    assert "src/**" in user["content"] and "Keep functions small." in user["content"]
    assert "Use type hints." in user["content"]
    assert "<defect>\nhalf() returns x; return x // 2\n</defect>" in user["content"]
    assert work in user["content"]
    for message in (system, *asks):
        for marker in ("{{", "{%", "{#", "Variables:"):
            assert marker not in message["content"]
        assert "\n\n\n" not in message["content"]


def test_without_a_test_command_the_fix_is_read_again_not_run() -> None:
    *_, ask = code_fix_messages(
        SPEC, "Add half()", RULES, project(""), "a defect", "work", max_steps=3
    )
    assert "run_command" not in ask["content"]
    assert "No test command is configured" in ask["content"]


def test_the_problem_joins_reason_and_feedback_and_the_work_is_bounded() -> None:
    both = fix_problem(Review(verdict="fix", reason="Wrong name.", feedback="Rename f to g."))
    assert both == "Wrong name.\n\nRename f to g."
    assert fix_problem(Review(verdict="fix", reason="Same.", feedback="Same.")) == "Same."
    *_, user = code_fix_messages(
        SPEC, "Add half()", RULES, project(), "d", "x" * (WORK_CHARS * 2), max_steps=3
    )
    assert len(user["content"]) < WORK_CHARS + 5_000
    assert "the work cut here" in user["content"]
