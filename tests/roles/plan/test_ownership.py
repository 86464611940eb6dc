"""Tests for a code task's ownership: globs matched as .gitignore reads them, overlaps found
only when a path shows them, and the validator's code-task checks and messages."""

from __future__ import annotations

from typing import Any

import pytest

from roles.plan.ownership import glob_matches, globs_overlap
from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import PlanRules, format_problems, validate_plan
from roles.prompts import PromptRules

CODE = PlanRules(code=True)


def stream(stream_id: str, *globs: str, **fields: Any) -> StreamSpec:
    values: dict[str, Any] = {
        "title": f"Stream {stream_id}",
        "job": f"Do the {stream_id} part.",
        "output_definition": f"The {stream_id} change.",
        "ownership": list(globs),
    }
    values.update(fields)
    return StreamSpec(id=stream_id, **values)


def plan(*streams: StreamSpec) -> Plan:
    return Plan(streams=list(streams))


def only_problem(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


# --- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/sidebar/**", "src/sidebar/drag/reorder.py", True),
        ("src/sidebar/**", "src/sidebarx.py", False),
        ("src/sidebar/", "src/sidebar/a.py", True),
        ("src/sidebar/", "src/sidebar", False),  # a directory pattern, not a file
        ("src/sidebar", "src/sidebar/a.py", True),  # a match on a directory covers below it
        ("*.md", "docs/guide/intro.md", True),  # no slash: any depth
        ("docs/*.md", "docs/guide/intro.md", False),  # one segment only
        ("docs/**/*.md", "docs/guide/intro.md", True),
        ("tests/test_?.py", "tests/test_a.py", True),
        ("tests/test_[ab].py", "tests/test_c.py", False),
        ("./src/a.py", "src/a.py", True),
        (".", "anything/at/all", True),
    ],
)
def test_glob_matches_like_gitignore(pattern: str, path: str, expected: bool) -> None:
    assert glob_matches(pattern, path) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("src/a.py", "src/a.py", True),
        ("src/a.py", "./src/a.py", True),
        ("src/", "src/a.py", True),
        ("src/**", "src/sidebar/**", True),
        ("src/**", "src/sidebar/a.py", True),
        ("*.py", "src/a.py", True),
        ("**", "docs/x.md", True),
        ("src/*.py", "src/*.ts", False),
        ("src/sidebar/**", "src/toolbar/**", False),
        ("tests/test_sidebar.py", "src/sidebar/**", False),
        ("auth", "authz/x.py", False),
        ("", "src/a.py", False),
    ],
)
def test_globs_overlap_when_a_path_matches_both(first: str, second: str, expected: bool) -> None:
    assert globs_overlap(first, second) is expected
    assert globs_overlap(second, first) is expected


# --- the validator for code tasks -------------------------------------------------------------


def test_a_good_code_plan_passes() -> None:
    good = plan(
        stream("tests", "tests/test_sidebar.py", kind="tests"),
        stream("drag", "src/sidebar/drag/**", kind="implementation", depends_on=["tests"]),
        stream("order", "src/sidebar/order.py", kind="implementation", depends_on=["tests"]),
        # Depends on both: may change what they own (it starts from their result).
        stream("wire", "src/sidebar/**", "docs/*.md", depends_on=["drag", "order"]),
    )
    assert validate_plan(good, PlanRules(code=True, require_tests_first=True)) == []


def test_every_stream_must_own_a_glob() -> None:
    problem = only_problem(validate_plan(plan(stream("a", "src/a.py"), stream("b", " ")), CODE))
    assert problem.startswith("stream 'b' owns no paths: give it at least one ownership glob")
    # A text task's stream may own nothing (it only reports).
    assert validate_plan(plan(stream("a", "src/a.py"), stream("b")), PlanRules()) == []


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("/src/a.py", "'/src/a.py', an absolute path: ownership globs are relative to the "
         "repository root, e.g. 'src/a.py'"),
        ("C:/src/a.py", "an absolute path"),
        ("~/notes.md", "an absolute path"),
        ("../other/x.py", "climbs out with '..'"),
        ("src/../../x.py", "climbs out with '..'"),
        (".git/hooks/pre-commit", "inside '.git', which belongs to git"),
        ("sub/.git/config", "inside '.git'"),
    ],
)  # fmt: skip
def test_globs_must_stay_inside_the_repository(glob: str, expected: str) -> None:
    problem = only_problem(validate_plan(plan(stream("a", glob)), CODE))
    assert problem.startswith("stream 'a' owns ")
    assert expected in problem


def test_globs_that_merely_look_odd_are_fine() -> None:
    ok = plan(stream("a", "src/..hidden/x.py", ".github/workflows/*.yml", "./README.md"))
    assert validate_plan(ok, CODE) == []


def test_parallel_streams_must_not_own_the_same_paths() -> None:
    clash = plan(stream("a", "src/a.py", "src/**"), stream("b", "src/b/**"), stream("c", "docs/"))
    problem = only_problem(validate_plan(clash, CODE))
    assert problem == (
        "streams 'a' and 'b' can run at the same time but both own 'src/**' and 'src/b/**': "
        "streams that run in parallel must own disjoint paths; give those paths to one of them, "
        "or make one depend on the other"
    )
    same = only_problem(validate_plan(plan(stream("a", "x.py"), stream("b", "x.py")), CODE))
    assert "both own 'x.py':" in same


def test_streams_in_one_chain_may_share_paths_even_transitively() -> None:
    chain = plan(
        stream("a", "src/"),
        stream("b", "docs/**", depends_on=["a"]),
        stream("c", "src/x.py", depends_on=["b"]),
    )
    assert validate_plan(chain, CODE) == []
    # The same plan as a text task keeps the old rule: ownership is disjoint across all streams.
    assert validate_plan(chain, PlanRules()) != []


def test_never_parallel_runs_one_chain_so_sharing_is_fine() -> None:
    shared = plan(stream("a", "src/**"), stream("b", "src/x.py"))
    assert validate_plan(shared, PlanRules(code=True)) != []
    assert validate_plan(shared, PlanRules(code=True, parallelize="never")) == []


def test_coupled_areas_are_matched_as_globs_in_code_tasks() -> None:
    split = plan(stream("a", "src/auth/**"), stream("b", "src/db/*.py", depends_on=["a"]))
    rules = PlanRules(code=True, coupled=[["src/auth/", "src/db/"]])
    problem = only_problem(validate_plan(split, rules))
    assert "coupled areas src/auth/ and src/db/ are split across streams 'a' and 'b'" in problem


def test_every_code_problem_is_reported_at_once_for_the_retry() -> None:
    bad = plan(stream("a", "/abs.py", "x/**"), stream("b"), stream("c", "x/y.py"))
    problems = validate_plan(bad, CODE)
    assert len(problems) == 3
    message = format_problems(problems)
    assert message.startswith("The plan was rejected: the validator found 3 problems.")
    for part in (
        "1. stream 'a' owns '/abs.py'",
        "2. stream 'b' owns no paths",
        "3. streams 'a' and 'c'",
    ):
        assert part in message, part


def test_prompt_rules_carry_code_and_turn_tests_first_on_for_code() -> None:
    code = PromptRules(code=True)
    assert code.tests_first is True
    assert code.to_plan_rules() == PlanRules(code=True, require_tests_first=True)
    assert PromptRules(code=True, tests_first=False).to_plan_rules().require_tests_first is False
    assert PromptRules().tests_first is False
    assert PromptRules().to_plan_rules().code is False


def test_tests_first_for_code_needs_a_tests_stream_before_implementation() -> None:
    rules = PromptRules(code=True).to_plan_rules()
    no_tests = plan(stream("impl", "src/**", kind="implementation"))
    problem = only_problem(validate_plan(no_tests, rules))
    assert "no stream of kind 'tests'" in problem
