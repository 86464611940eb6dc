"""Tests for the plan validator: every rejection, its message, and the graph helpers."""

from __future__ import annotations

from typing import Any

import pytest

from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import (
    PlanInvalid,
    PlanRules,
    areas_overlap,
    critical_path,
    ensure_valid,
    format_problems,
    is_code_shaped,
    normalize_area,
    sequentialize,
    topological_order,
    validate_plan,
)


def stream(stream_id: str, **fields: Any) -> StreamSpec:
    """A valid stream unless the test overrides a field."""
    values: dict[str, Any] = {
        "title": f"Stream {stream_id}",
        "job": f"Do the {stream_id} part.",
        "output_definition": f"The {stream_id} result.",
    }
    values.update(fields)
    return StreamSpec(id=stream_id, **values)


def plan(*streams: StreamSpec) -> Plan:
    return Plan(summary="test plan", streams=list(streams), merge_instruction="concatenate")


RULES = PlanRules()


def only_problem(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


# --- a valid plan ---------------------------------------------------------------------------


def test_valid_plan_has_no_problems() -> None:
    valid = plan(
        stream("tests", kind="tests", ownership=["tests/test_auth.py"]),
        stream("auth", kind="implementation", ownership=["auth/"], depends_on=["tests"]),
        stream("docs", kind="writing", ownership=["docs/auth.md"]),
        stream("review", depends_on=["auth", "docs"]),
    )
    rules = PlanRules(coupled=[["auth/", "auth/session/"]], require_tests_first=True)
    assert validate_plan(valid, rules) == []
    ensure_valid(valid, rules)  # does not raise
    assert format_problems([]) == ""


# --- each rejection -------------------------------------------------------------------------


def test_zero_streams_rejected() -> None:
    # Plan's own schema refuses an empty list, so build it past validation like a split might.
    empty = Plan.model_construct(summary="", streams=[], merge_instruction="")
    assert "no streams" in only_problem(validate_plan(empty, RULES))


def test_unknown_dependency_named() -> None:
    problem = only_problem(validate_plan(plan(stream("a"), stream("b", depends_on=["z"])), RULES))
    assert "stream 'b' depends on unknown stream 'z'" in problem
    assert "'a' and 'b'" in problem  # tells the planner which ids exist


def test_duplicate_ids_rejected() -> None:
    problem = only_problem(validate_plan(plan(stream("a"), stream("a"), stream("b")), RULES))
    assert "stream id 'a' is used by 2 streams" in problem


def test_self_dependency_rejected_without_a_cycle_report() -> None:
    problem = only_problem(validate_plan(plan(stream("a", depends_on=["a"])), RULES))
    assert "stream 'a' depends on itself" in problem


def test_two_stream_cycle_path_reported() -> None:
    cyclic = plan(stream("a", depends_on=["b"]), stream("b", depends_on=["a"]))
    assert only_problem(validate_plan(cyclic, RULES)).startswith("cycle: a -> b -> a")


def test_longer_cycle_path_reported_from_first_stream() -> None:
    cyclic = plan(
        stream("x"),
        stream("a", depends_on=["c", "x"]),
        stream("b", depends_on=["a"]),
        stream("c", depends_on=["b"]),
    )
    problem = only_problem(validate_plan(cyclic, RULES))
    assert "cycle: a -> c -> b -> a" in problem


def test_each_separate_cycle_reported() -> None:
    cyclic = plan(
        stream("a", depends_on=["b"]),
        stream("b", depends_on=["a"]),
        stream("c", depends_on=["d"]),
        stream("d", depends_on=["c"]),
    )
    problems = validate_plan(cyclic, RULES)
    assert [p.split(" (")[0] for p in problems] == ["cycle: a -> b -> a", "cycle: c -> d -> c"]


@pytest.mark.parametrize("definition", ["", "   \n"])
def test_missing_or_blank_output_definition_rejected(definition: str) -> None:
    problem = only_problem(validate_plan(plan(stream("a", output_definition=definition)), RULES))
    assert "stream 'a' has no output_definition" in problem


def test_blank_job_rejected() -> None:
    problem = only_problem(validate_plan(plan(stream("a", job="  ")), RULES))
    assert "stream 'a' has a blank job" in problem


def test_too_many_streams_rejected() -> None:
    many = plan(*(stream(f"s{i}") for i in range(4)))
    problem = only_problem(validate_plan(many, PlanRules(max_streams=3)))
    assert "4 streams but at most 3" in problem
    assert validate_plan(many, PlanRules(max_streams=4)) == []


# --- ownership ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("auth/", "auth/login.py", True),
        ("auth", "auth/x", True),
        ("auth/", "auth", True),
        ("./Auth/", "auth/login.py", True),  # case and leading ./ do not matter
        ("auth/login.py", "AUTH/LOGIN.PY", True),
        ("auth", "authz", False),  # a prefix only counts at a '/' boundary
        ("auth/login.py", "auth/logout.py", False),
        ("src/auth", "auth", False),
        (".", "anything/at/all", True),  # the workspace root owns everything
        ("", "auth", False),  # a blank entry claims nothing
    ],
)
def test_areas_overlap(first: str, second: str, overlap: bool) -> None:
    assert areas_overlap(first, second) is overlap
    assert areas_overlap(second, first) is overlap


def test_normalize_area() -> None:
    assert normalize_area(" ./././Src//Auth/ ") == "src/auth"
    assert normalize_area("src\\auth\\") == "src/auth"


def test_overlapping_ownership_names_both_streams_and_areas() -> None:
    overlapping = plan(
        stream("a", ownership=["auth/"]),
        stream("b", ownership=["docs/", "./auth/login.py"]),
    )
    problem = only_problem(validate_plan(overlapping, RULES))
    assert "streams 'a' and 'b' own overlapping areas 'auth/' and './auth/login.py'" in problem


def test_disjoint_siblings_and_overlap_within_one_stream_pass() -> None:
    fine = plan(
        stream("a", ownership=["auth/login.py", "auth/"]),  # a stream may repeat itself
        stream("b", ownership=["authz/", "auth-docs.md"]),
    )
    assert validate_plan(fine, RULES) == []


# --- coupled groups -------------------------------------------------------------------------


def test_coupled_group_split_across_streams_rejected() -> None:
    split = plan(stream("a", ownership=["auth/"]), stream("b", ownership=["db/models.py"]))
    problem = only_problem(validate_plan(split, PlanRules(coupled=[["auth/", "db/"]])))
    assert problem == (
        "coupled areas auth/ and db/ are split across streams 'a' and 'b': put them in one stream"
    )


def test_coupled_group_in_one_stream_passes() -> None:
    together = plan(stream("a", ownership=["auth/", "db/"]), stream("b", ownership=["ui/"]))
    assert validate_plan(together, PlanRules(coupled=[["auth/", "db/"]])) == []


def test_coupled_area_split_inside_itself_rejected() -> None:
    # Two streams each owning a part of auth/ also split the group, without overlapping.
    split = plan(
        stream("a", ownership=["auth/login.py"]),
        stream("b", ownership=["auth/session.py"]),
        stream("c", ownership=["ui/"]),
    )
    problem = only_problem(validate_plan(split, PlanRules(coupled=[["auth/", "db/"]])))
    assert "split across streams 'a' and 'b'" in problem
    assert "'c'" not in problem


# --- tests first ----------------------------------------------------------------------------


def test_tests_first_accepts_transitive_dependency() -> None:
    chain = plan(
        stream("tests", kind="tests"),
        stream("api", kind="implementation", depends_on=["tests"]),
        stream("ui", kind="implementation", depends_on=["api"]),
    )
    assert validate_plan(chain, PlanRules(require_tests_first=True)) == []


def test_tests_first_rejects_implementation_without_tests_ancestor() -> None:
    loose = plan(
        stream("tests", kind="tests"),
        stream("api", kind="implementation", depends_on=["tests"]),
        stream("ui", kind="implementation"),
    )
    problem = only_problem(validate_plan(loose, PlanRules(require_tests_first=True)))
    assert "implementation stream 'ui' does not depend on a stream of kind 'tests'" in problem
    # The same plan is fine when the rule does not apply (goal not code-shaped).
    assert validate_plan(loose, PlanRules(require_tests_first=False)) == []


def test_tests_first_without_any_tests_stream() -> None:
    untested = plan(stream("api", kind="implementation"), stream("ui", kind="implementation"))
    problem = only_problem(validate_plan(untested, PlanRules(require_tests_first=True)))
    assert "no stream of kind 'tests'" in problem
    assert "'api' and 'ui'" in problem


# --- messages for the planner ---------------------------------------------------------------


def test_all_problems_reported_together_and_formatted() -> None:
    bad = plan(
        stream("a", depends_on=["b"], ownership=["x/"]),
        stream("b", depends_on=["a", "z"], ownership=["x/y"], output_definition=""),
    )
    problems = validate_plan(bad, RULES)
    assert len(problems) == 4
    message = format_problems(problems)
    assert message.startswith("The plan was rejected: the validator found 4 problems.")
    assert "1. stream 'b' depends on unknown stream 'z'" in message
    assert "cycle: a -> b -> a" in message
    assert "complete corrected plan" in message
    with pytest.raises(PlanInvalid) as caught:
        ensure_valid(bad, RULES)
    assert caught.value.problems == problems
    assert str(caught.value) == message


def test_rules_reject_unknown_parallelize_mode() -> None:
    with pytest.raises(ValueError, match="parallelize"):
        PlanRules(parallelize="sometimes")  # type: ignore[arg-type]


# --- graph helpers --------------------------------------------------------------------------


def test_topological_order_is_stable() -> None:
    # Ready streams keep their plan order: c before a (both ready), b after a.
    diamond = plan(
        stream("c"),
        stream("b", depends_on=["a"]),
        stream("a"),
        stream("d", depends_on=["b", "c"]),
    )
    assert topological_order(diamond) == ["c", "a", "b", "d"]
    assert topological_order(diamond) == topological_order(diamond.model_copy(deep=True))
    in_order = plan(stream("x"), stream("y"), stream("z", depends_on=["x"]))
    assert topological_order(in_order) == ["x", "y", "z"]


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(PlanInvalid, match=r"cycle: a -> b -> a"):
        topological_order(plan(stream("a", depends_on=["b"]), stream("b", depends_on=["a"])))


def test_critical_path_is_the_longest_chain() -> None:
    graph = plan(
        stream("a"),
        stream("b", depends_on=["a"]),
        stream("c", depends_on=["a"]),
        stream("d", depends_on=["b", "c"]),
    )
    durations = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.5}
    assert critical_path(graph, durations) == pytest.approx(7.5)  # a -> b -> d
    assert sum(durations.values()) == pytest.approx(9.5)  # the sequential time is longer
    # A stream that never ran counts as zero.
    assert critical_path(graph, {"a": 1.0, "c": 2.0}) == pytest.approx(3.0)


def test_sequentialize_makes_a_chain_and_keeps_dependencies() -> None:
    parallel = plan(
        stream("a"),
        stream("b"),
        stream("c", depends_on=["a"]),
        stream("d"),
    )
    chain = sequentialize(parallel)
    assert [s.id for s in chain.streams] == ["a", "b", "c", "d"]
    assert [s.depends_on for s in chain.streams] == [[], ["a"], ["a", "b"], ["c"]]
    assert critical_path(chain, {"a": 1, "b": 1, "c": 1, "d": 1}) == pytest.approx(4.0)
    # The original plan is untouched and the copy keeps the plan's other fields.
    assert parallel.streams[1].depends_on == []
    assert chain.merge_instruction == parallel.merge_instruction
    assert validate_plan(chain, RULES) == []


def test_sequentialize_orders_streams_topologically() -> None:
    backwards = plan(stream("late", depends_on=["early"]), stream("early"))
    chain = sequentialize(backwards)
    assert [s.id for s in chain.streams] == ["early", "late"]
    assert chain.streams[1].depends_on == ["early"]


# --- goal shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "goal",
    [
        "Fix the bug in the login flow",
        "Refactor the auth module",
        "Add an endpoint to the REST API",
        "Why does auth/login.py crash on empty passwords?",
        "Make parse_args() accept --verbose",
        "Add drag-and-drop to the sidebar",
        "Write unit tests for the parser",
    ],
)
def test_code_shaped_goals(goal: str) -> None:
    assert is_code_shaped(goal)


@pytest.mark.parametrize(
    "goal",
    [
        "Prepare the follow-up for this inbound lead",
        "Summarize the quarterly sales figures, e.g. by region",
        "Draft a blog post about our new pricing package",
    ],
)
def test_goals_that_are_not_code_shaped(goal: str) -> None:
    assert not is_code_shaped(goal)
