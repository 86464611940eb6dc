"""Tests for the prompts of a code task: the planner sees the repository and the glob rules,
the coder is told its ownership, tools and how to finish, the review holds the executor to
the recorded facts; and a text task's prompts are exactly what they were before code tasks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support.scripted import ScriptedCaller
from test_prompts import RULES, all_messages, json_blocks, text

from roles import orchestrator
from roles.coder import DIFF_CHARS, coder_messages, coder_review_text
from roles.plan.schema import Plan, Review, StreamSpec
from roles.plan.validator import validate_plan
from roles.planner import make_plan
from roles.project import ProjectContext
from roles.prompts import PromptRules, planner_messages, review_messages

GOLDEN = Path(__file__).parent / "golden" / "text_task_prompts.json"
TOOLS = ("list_files", "read_file", "search", "write_file", "edit_file", "apply_patch", "finish")
CODE_RULES = PromptRules(code=True, instructions=["Keep the public API stable."])
PROJECT = ProjectContext.build(
    ["src/sidebar/panel.py", "src/sidebar/__init__.py", "tests/test_panel.py", "README.md"],
    {"AGENTS.md": "Run pytest before you finish. AGENTS-MARKER", "CLAUDE.md": "CLAUDE-MARKER"},
    test_command="python -m pytest -q",
    lint_command="ruff check .",
)
IMPL = StreamSpec(
    id="drag",
    title="Implement drag and drop",
    job="Let the user reorder sidebar items by dragging.",
    output_definition="src/sidebar/drag.py implements reordering.",
    ownership=["src/sidebar/drag.py", "src/sidebar/__init__.py"],
    depends_on=["tests"],
    kind="implementation",
    acceptance_check="The new tests pass.",
)
TESTS = IMPL.model_copy(
    update={"id": "tests", "kind": "tests", "depends_on": [], "ownership": ["tests/**"]}
)


# --- a text task is unchanged ---------------------------------------------------------------


def test_text_task_prompts_are_exactly_as_before_code_tasks() -> None:
    # Rendered from the text-task templates (same inputs as test_prompts.all_messages), last
    # regenerated when the premium prompts became a shared prefix and a request (issue #20).
    # If you change planner.md, review.md or a partial on purpose, regenerate the file from
    # the new renders.
    golden = json.loads(GOLDEN.read_text())
    rendered = all_messages()
    assert rendered["planner.md"] == golden["planner"]
    assert rendered["review.md"] == golden["review"]
    default = planner_messages("Add a login form", "ctx", PromptRules())
    assert default == golden["planner_default"]
    assert planner_messages("Add a login form", "ctx", PromptRules(), project=None) == default


def test_a_text_task_prompt_says_nothing_of_repositories_or_globs() -> None:
    content = text(planner_messages("Draft a launch plan", "", RULES))
    for word in ("worktree", "glob", "<file-tree>", "AGENTS.md", "repository"):
        assert word not in content, word


# --- the planner of a code task -------------------------------------------------------------


def test_the_code_planner_sees_the_tree_the_instructions_and_the_glob_rules() -> None:
    system, prefix, request = planner_messages(
        "Add drag-and-drop to the sidebar", "", CODE_RULES, project=PROJECT
    )
    # The repository is the task's material (the prefix); the glob rules are the request's.
    content = prefix["content"] + "\n" + request["content"]
    tree = content[content.index("<file-tree>") : content.index("</file-tree>")]
    for path in ("src/sidebar/panel.py", "tests/test_panel.py", "README.md"):
        assert path in tree, path
    assert "AGENTS-MARKER" in content and "CLAUDE-MARKER" in content
    assert "The project's own instructions" in content
    assert "- test: python -m pytest -q" in content and "- lint: ruff check ." in content
    assert "path globs relative to the repository root, read like .gitignore" in content
    assert '"src/sidebar/**", "tests/test_sidebar.py"' in content
    assert "Streams that can run in parallel own disjoint paths" in content
    assert 'the first stream, of kind "tests", writes the tests that pin down' in content
    assert "- Keep the public API stable." in content
    # The system message describes the executors as agents in worktrees, not text writers.
    assert "its own\ngit worktree" in system["content"]
    assert "Two streams never own the same area" not in text([system, prefix, request])


def test_the_code_planners_example_is_a_valid_code_plan() -> None:
    request = planner_messages("g", "", CODE_RULES, project=PROJECT)[-1]["content"]
    (example,) = json_blocks(request)
    plan = Plan.model_validate(example)
    assert validate_plan(plan, CODE_RULES.to_plan_rules()) == []
    assert plan.streams[0].kind == "tests"


def test_a_huge_repository_keeps_the_planner_prompt_bounded() -> None:
    paths = [f"pkg{d}/mod{i}.py" for d in range(200) for i in range(100)]
    big = ProjectContext.build(paths, {"AGENTS.md": "rule\n" * 100_000})
    content = planner_messages("g", "", CODE_RULES, project=big)[1]["content"]
    assert len(content) < 60_000
    assert "20000 tracked files" in content


def test_a_project_without_instructions_or_commands_says_so() -> None:
    bare = ProjectContext.build(["a.py"], {})
    content = planner_messages("g", "", CODE_RULES, project=bare)[1]["content"]
    assert "The project has no AGENTS.md or CLAUDE.md." in content
    assert "No test or lint command is configured" in content
    assert "<project-instructions>" not in content


async def test_make_plan_shows_the_repository_and_sends_glob_problems_back() -> None:
    clash = {
        "streams": [
            {
                "id": "a",
                "title": "A",
                "job": "a",
                "output_definition": "a",
                "ownership": ["src/**"],
            },
            {
                "id": "b",
                "title": "B",
                "job": "b",
                "output_definition": "b",
                "ownership": ["src/b.py"],
            },
        ]
    }
    fixed = {"streams": [{**clash["streams"][0]}, {**clash["streams"][1], "depends_on": ["a"]}]}
    model = ScriptedCaller({"plan:*": [clash, fixed]})
    rules = PromptRules(code=True, tests_first=False)
    outcome = await make_plan(
        model, "Goal", "", rules, rules.to_plan_rules(), max_attempts=3, project=PROJECT
    )
    assert outcome.plan is not None and outcome.attempts == 2
    first, retry = model.of("plan:0")[0].prompt, model.of("plan:1")[0].prompt
    assert "src/sidebar/panel.py" in first and "AGENTS-MARKER" in first
    assert (
        "streams 'a' and 'b' can run at the same time but both own 'src/**' and 'src/b.py'" in retry
    )


# --- the coder ------------------------------------------------------------------------------


def coder(stream: StreamSpec = IMPL, **kw: Any) -> list[dict[str, Any]]:
    values: dict[str, Any] = {
        "stream": stream,
        "goal_line": "Add drag-and-drop to the sidebar",
        "dep_outputs": {"tests": "Wrote tests/test_drag.py; they fail as expected."},
        "rules": CODE_RULES,
        "project": PROJECT,
        "feedback": None,
        "answers": None,
    }
    values.update(kw)
    return coder_messages(**values)


def test_the_coder_is_told_its_tools_its_ownership_and_how_to_finish() -> None:
    system, user = coder()
    assert [system["role"], user["role"]] == ["system", "user"]
    for tool in (*TOOLS, "run_command"):
        assert f"- {tool}:" in system["content"], tool
    assert "Available: test, lint." in system["content"]
    assert "The write tools refuse any\nother path" in system["content"]
    assert "call finish with a summary of what you changed" in system["content"]
    assert (
        "how you checked\n   it" in system["content"] and "what is left undone" in system["content"]
    )
    assert 'run the tests (run_command with name "test")' in system["content"]
    content = user["content"]
    assert (
        "Your ownership (the only files you may create or change): "
        "src/sidebar/drag.py, src/sidebar/__init__.py"
    ) in content
    assert "Let the user reorder sidebar items by dragging." in content
    assert "AGENTS-MARKER" in content and "src/sidebar/panel.py" in content
    assert "- Keep the public API stable." in content
    assert '<summary stream="tests">\nWrote tests/test_drag.py' in content
    assert "merged in" in system["content"]  # it starts from its dependencies' work


def test_a_coder_without_commands_gets_no_run_command() -> None:
    bare = ProjectContext.build(["a.py"], {})
    system = coder(project=bare)[0]["content"]
    assert "run_command" not in system
    assert "No test command is configured" in system


def test_a_tests_stream_coder_expects_its_new_tests_to_fail() -> None:
    system = coder(TESTS, dep_outputs={})[0]["content"]
    assert "your new tests should\n   fail now" in system
    assert "merged in" not in system
    assert "do not weaken them" in coder()[0]["content"]


def test_a_redo_gives_the_coder_the_feedback_answers_and_step_budget() -> None:
    system, user = coder(
        feedback="test_drag_keeps_selection fails: keep the selection.",
        answers={"Animate the move?": "No."},
        previous_summary="PREVIOUS SUMMARY",
        max_steps=25,
    )
    assert "You have at most 25 steps" in system["content"]
    content = user["content"]
    assert "test_drag_keeps_selection fails: keep the selection." in content
    assert "Your worktree still holds it" in content
    assert "PREVIOUS SUMMARY" in content and "Animate the move?" in content
    first = coder(previous_summary="PREVIOUS SUMMARY")[1]["content"]
    assert "PREVIOUS SUMMARY" not in first and "sent your previous work back" not in first


def test_the_coder_prompt_does_not_grow_with_the_repository_past_its_bound() -> None:
    paths = [f"pkg{d}/mod{i}.py" for d in range(200) for i in range(100)]
    big = ProjectContext.build(paths, {"AGENTS.md": "short"})
    user = coder(project=big)[1]["content"]
    tree = user[user.index("<file-tree>") : user.index("</file-tree>")]
    assert len(tree) < 8_200


# --- the review of a code stream ------------------------------------------------------------

COMMANDS = [
    {"command": "python -m pytest -q", "name": "test", "exit_code": 1, "duration_s": 1.25,
     "output": "FAILED tests/test_drag.py::test_move\n1 failed, 3 passed"},
    {"command": "ruff check .", "name": "lint", "exit_code": 0, "duration_s": 0.2},
]  # fmt: skip


def test_review_text_states_the_facts_before_the_claim() -> None:
    review = coder_review_text(
        "All done, tests pass.",
        " src/sidebar/drag.py | 12 ++++++++----\n 1 file changed",
        "diff --git a/src/sidebar/drag.py b/src/sidebar/drag.py\n+def move(): ...",
        COMMANDS,
    )
    assert "1. test: `python -m pytest -q` -> exit 1 (FAILED), 1.2 s" in review
    assert "2. lint: `ruff check .` -> exit 0 (passed), 0.2 s" in review
    assert "1 failed, 3 passed" in review
    assert "The executor's last run of the test command FAILED (exit 1)." in review
    assert " src/sidebar/drag.py | 12 ++++++++----" in review  # --stat's indent kept
    assert "<diff>\ndiff --git a/src/sidebar/drag.py" in review
    assert review.index("FAILED") < review.index("All done, tests pass.")


def test_review_text_with_tierds_own_run_and_no_commands() -> None:
    review = coder_review_text(
        "",
        "",
        "",
        [],
        test_run={"command": "pytest", "exit_code": 0, "duration_s": 3, "output": "5 passed"},
    )
    assert "The executor ran no command." in review
    assert "this decides over any run by the executor" in review
    assert "test: `pytest` -> exit 0 (passed), 3.0 s" in review and "Result: passed." in review
    assert "None: the stream changed no file." in review
    assert "<diff>" not in review and "(no summary)" in review


def test_review_text_is_bounded() -> None:
    commands = [
        {"command": f"cmd {i}", "name": "shell", "exit_code": 0, "output": "o" * 10_000}
        for i in range(100)
    ]
    commands.append({"command": "pytest", "name": "test", "exit_code": None})
    review = coder_review_text("s" * 50_000, " x | 1 +\n" * 5_000, "+line\n" * 50_000, commands)
    assert len(review) < 50_000
    assert "(81 earlier commands not shown)" in review
    assert "101. test: `pytest` -> no exit code (timed out or stopped)" in review
    assert len(re.findall("<command-output>", review)) == 3
    assert "the diff cut here" in review and "the summary cut here" in review
    assert len(review) > DIFF_CHARS  # the diff itself keeps its full budget


def test_the_code_review_prompt_holds_the_executor_to_the_facts() -> None:
    work = coder_review_text("Done.", " a.py | 1 +", "+x", COMMANDS)
    system, prefix, request = review_messages(IMPL, work, CODE_RULES, project=PROJECT)
    assert "Evidence decides, not the executor's word" in system["content"]
    assert "Never accept because the\n  summary says" in request["content"]
    assert "When the last test run failed" in request["content"]
    assert "do not accept it" in request["content"]
    assert '"fix"' not in request["content"]  # a code stream has no text to fix in part 1
    (example,) = json_blocks(request["content"])
    Review.model_validate(example)
    assert f'<work stream="drag">\n{work}\n</work>' in request["content"]
    # The project's instructions are the task's material, in the shared prefix.
    assert "AGENTS-MARKER" in prefix["content"]
    with_fix = review_messages(IMPL, work, CODE_RULES, can_fix=True)[-1]["content"]
    assert '- "fix": a small defect you will correct yourself with the same tools' in with_fix


def test_the_review_of_a_tests_stream_expects_failing_new_tests() -> None:
    request = review_messages(TESTS, "work", CODE_RULES)[-1]["content"]
    assert "its new tests are\nexpected to fail" in request
    assert "expected to fail" not in review_messages(IMPL, "work", CODE_RULES)[-1]["content"]


@pytest.mark.parametrize("can_fix", [None, False])
def test_a_text_review_can_drop_the_fix_verdict_only_when_asked(can_fix: bool | None) -> None:
    content = review_messages(IMPL, "OUT", RULES, can_fix=can_fix)[-1]["content"]
    assert ('- "fix"' in content) is (can_fix is None)


async def test_orchestrator_review_passes_the_code_prompt_on() -> None:
    model = ScriptedCaller({"review:drag:r0": {"verdict": "redo", "feedback": "fix test_move"}})
    work = coder_review_text("Done.", " a.py | 1 +", "+x", COMMANDS)
    verdict = await orchestrator.review(model, IMPL, work, CODE_RULES, round=0, project=PROJECT)
    assert (verdict.verdict, verdict.feedback) == ("redo", "fix test_move")
    (call,) = model.calls
    assert "Evidence decides" in call.prompt and "AGENTS-MARKER" in call.prompt
