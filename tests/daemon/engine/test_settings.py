"""A task's settings as the engine reads them, and the usage records it keeps."""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

import pytest

from daemon.config.layers import shipped_config_dir
from daemon.engine.settings import TaskSettings, shipped_task_defaults
from daemon.engine.usage import to_record, to_row
from roles.models.errors import ModelConfigError
from roles.models.usage import UsageRecord

CODE_GOAL = "Implement retry logic in src/client.py and add tests"


def shipped() -> dict[str, Any]:
    with (shipped_config_dir() / "default.toml").open("rb") as f:
        return tomllib.load(f)


def test_defaults_come_from_the_shipped_config() -> None:
    toml = shipped()
    s = TaskSettings.from_stored({})
    assert s.max_streams == toml["plan"]["max_streams"]
    assert s.max_attempts == toml["plan"]["max_attempts"]
    assert s.split_depth == toml["plan"]["split_depth"]
    assert s.max_rounds == toml["review"]["max_rounds"]
    assert s.approval == toml["review"]["approval"]
    assert s.max_revisions == toml["review"]["max_revisions"]
    assert s.parallelize == toml["rules"]["parallelize"]
    assert s.premium_model == toml["models"]["orchestrator"]["model"]
    assert s.tiers()["executor"].model == toml["models"]["executor"]["model"]
    assert s.notify_command == toml["notify"]["command"]


def test_settings_stored_by_an_older_tierd_load_with_todays_values() -> None:
    """A task stored before some keys existed: the missing ones take the values the engine
    has always used for them."""
    old = {
        "models.orchestrator.model": "openai/gpt-5",
        "models.planner.model": "openai/gpt-5",
        "models.executor.model": "openai/gpt-5-mini",
        "rules.coupled": [["auth/", "db/"]],
    }
    s = TaskSettings.from_stored(old)
    assert (s.max_streams, s.max_attempts, s.split_depth) == (8, 3, 2)
    assert (s.max_rounds, s.approval, s.max_revisions) == (2, "none", 2)
    assert s.parallelize == "when-possible" and s.coupled == (("auth/", "db/"),)
    assert s.tiers()["executor"].model == "openai/gpt-5-mini"
    assert dict(s.stored) == old  # the report shows what was stored, as it was


def test_stored_values_win_over_the_defaults() -> None:
    stored = shipped_task_defaults()
    stored.update({"plan.max_streams": 3, "review.max_rounds": 0, "review.approval": "required"})
    s = TaskSettings.from_stored(stored)
    assert (s.max_streams, s.max_rounds, s.approval) == (3, 0, "required")


def test_never_parallel_means_no_splits_either() -> None:
    s = TaskSettings.from_stored({"rules.parallelize": "never", "plan.split_depth": 4})
    assert s.never and s.split_depth_left == 0
    assert s.prompt_rules("Write a note").split_depth_left == 0
    assert TaskSettings.from_stored({"plan.split_depth": 4}).split_depth_left == 4


def test_prompt_rules_and_plan_rules_are_the_same_rules() -> None:
    s = TaskSettings.from_stored(
        {"plan.max_streams": 5, "rules.coupled": [["a/", "b/"]], "rules.instructions": ["Be brief"]}
    )
    rules = s.prompt_rules(CODE_GOAL)
    assert rules.tests_first and rules.instructions == ["Be brief"] and rules.max_streams == 5
    assert s.plan_rules(CODE_GOAL) == rules.to_plan_rules()
    assert s.plan_rules(CODE_GOAL).require_tests_first
    assert not s.plan_rules("Draft a launch plan").require_tests_first


def test_a_tier_set_up_wrongly_names_the_key() -> None:
    s = TaskSettings.from_stored({"models.planner.timeout_s": 0})
    with pytest.raises(ModelConfigError, match=r"models\.planner\.timeout_s"):
        s.tiers()


def test_the_hook_is_kept_from_every_key_variable() -> None:
    s = TaskSettings.from_stored(
        {"models.executor.api_key_env": "LOCAL_KEY", "models.planner.api_key_env": ""}
    )
    assert sorted(s.key_names()) == ["LOCAL_KEY", "OPENAI_API_KEY"]


def test_a_usage_record_survives_the_store_by_name() -> None:
    record = UsageRecord(
        task_id="t1",
        stream_id="s1",
        role="executor",
        purpose="execute",
        model="openai/gpt-5-mini",
        prompt_tokens=120,
        completion_tokens=30,
        cost_usd=0.0012,
        latency_s=1.5,
        outcome="error",
        attempts=2,
        error="APIConnectionError: refused",
        started_at=1700000000.0,
        ended_at=1700000001.5,
        round=3,
    )
    row = to_row(record)
    kept = {f.name for f in dataclasses.fields(UsageRecord)} - {"ended_at", "round"}
    assert {k: getattr(row, k) for k in kept} == {k: getattr(record, k) for k in kept}
    again = to_record(row)
    # The table keeps no end time and no round: those come back as their defaults.
    assert again == dataclasses.replace(record, ended_at=0.0, round=0)


def test_an_unknown_cost_is_stored_as_zero_and_read_back_as_unknown() -> None:
    """The usage column is NOT NULL in every store written so far: an unknown cost is kept
    as 0.0 there, and read back as unknown (None) because the model has no known price."""
    unpriced = UsageRecord(
        task_id="t1",
        stream_id=None,
        role="executor",
        purpose="execute",
        model="openai/qwen2.5-coder",
        prompt_tokens=100,
        completion_tokens=10,
        cost_usd=None,
    )
    row = to_row(unpriced)
    assert row.cost_usd == 0.0
    assert to_record(row).cost_usd is None
    # A priced model at $0 stays $0, and an attempt that used nothing costs nothing.
    free = dataclasses.replace(unpriced, model="openai/gpt-5-mini", cost_usd=0.0)
    assert to_record(to_row(free)).cost_usd == 0.0
    unused = dataclasses.replace(unpriced, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
    assert to_record(to_row(unused)).cost_usd == 0.0
