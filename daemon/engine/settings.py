"""A task's settings, typed: `TaskSettings`, read from the task's stored effective config.

`task/submit` stores the task's effective configuration in `settings_json` (flat keys such as
"plan.max_streams" or "models.executor.model"); a running task keeps those, whatever the
config files say later. Defaults come only from the shipped `config/default.toml`: a task
stored by an older tierd, before a key existed, gets that key's shipped value (which is what
the engine used before the key existed).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from daemon.config.layers import load_defaults
from daemon.engine.code.settings import CodeSettings
from roles.models.tier import ModelTier
from roles.plan.validator import Parallelize, PlanRules, is_code_shaped
from roles.prompts import PromptRules

__all__ = ["ROLES", "SECTIONS", "TaskSettings", "shipped_task_defaults"]

#: The config tables a task keeps (the service stores these, and only these).
SECTIONS = ("models", "plan", "review", "rules", "notify", "code")
#: The roles that have a model tier.
ROLES = ("orchestrator", "planner", "executor")


@functools.cache
def _shipped() -> dict[str, Any]:
    return {k: v for k, v in load_defaults().items() if k.split(".")[0] in SECTIONS}


def shipped_task_defaults() -> dict[str, Any]:
    """The task keys of config/default.toml with their shipped values (a fresh copy)."""
    return json.loads(json.dumps(_shipped()))


@dataclass(frozen=True)
class TaskSettings:
    """What the engine reads from a task's settings, with its types."""

    #: Each role's `[models.ROLE]` table (tiers are built by `tiers()`, which may refuse one).
    models: Mapping[str, Mapping[str, Any]]
    max_streams: int
    max_attempts: int
    split_depth: int
    max_rounds: int
    approval: str
    max_revisions: int
    #: Code tasks: a stream (or a merged result) whose test command fails is not accepted.
    require_passing_tests: bool
    parallelize: Parallelize
    coupled: tuple[tuple[str, ...], ...]
    instructions: tuple[str, ...]
    #: `notify.command`: a command line (or argv list), "" when off.
    notify_command: Any
    #: The `[code]` table (used by code tasks only).
    code: CodeSettings
    #: The settings as stored with the task; the report shows them as they are.
    stored: Mapping[str, Any]

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> TaskSettings:
        """From the flat keys of `settings_json`; a missing key takes its shipped default."""
        s = {**_shipped(), **stored}
        models = {
            role: {
                k[len(f"models.{role}.") :]: v
                for k, v in s.items()
                if k.startswith(f"models.{role}.")
            }
            for role in ROLES
        }
        return cls(
            models=models,
            max_streams=int(s["plan.max_streams"]),
            max_attempts=int(s["plan.max_attempts"]),
            split_depth=int(s["plan.split_depth"]),
            max_rounds=int(s["review.max_rounds"]),
            approval=str(s["review.approval"]),
            max_revisions=int(s["review.max_revisions"]),
            require_passing_tests=bool(s["review.require_passing_tests"]),
            parallelize=cast(Parallelize, s["rules.parallelize"]),
            coupled=tuple(tuple(group) for group in s["rules.coupled"]),
            instructions=tuple(s["rules.instructions"]),
            notify_command=s["notify.command"],
            code=CodeSettings.from_flat(s),
            stored=dict(stored),
        )

    @classmethod
    def from_json(cls, text: str | None) -> TaskSettings:
        """From a task row's `settings_json` (None or "" for none stored)."""
        return cls.from_stored(json.loads(text or "{}"))

    @property
    def never(self) -> bool:
        """`rules.parallelize = "never"`: strictly sequential, no splits either."""
        return self.parallelize == "never"

    @property
    def split_depth_left(self) -> int:
        """How deep a top-level stream may split: plan.split_depth, 0 when never parallel."""
        return 0 if self.never else self.split_depth

    @property
    def premium_model(self) -> str:
        """The orchestrator's model: what "premium only" is priced on in the report."""
        return str(self.models["orchestrator"].get("model") or "")

    def key_names(self) -> list[str]:
        """The environment variables holding model keys (kept from the notify hook)."""
        return [str(t["api_key_env"]) for t in self.models.values() if t.get("api_key_env")]

    def tiers(self) -> dict[str, ModelTier]:
        """Each role's tier; raises ModelConfigError naming the key that is wrong."""
        return {
            role: ModelTier.from_config(self.models[role], where=f"models.{role}.")
            for role in ROLES
        }

    def prompt_rules(self, goal: str, *, code: bool = False) -> PromptRules:
        """The rules as this task's prompts state them; tests first for code tasks and
        code-shaped goals."""
        return PromptRules(
            code=code,
            instructions=list(self.instructions),
            parallelize=self.parallelize,
            coupled=[list(g) for g in self.coupled],
            max_streams=self.max_streams,
            # None: on for a code task (the rule's default there); else as the goal reads.
            tests_first=None if code else is_code_shaped(goal),
            split_depth_left=self.split_depth_left,
        )

    def plan_rules(self, goal: str, *, code: bool = False) -> PlanRules:
        """The validator's view of the same rules."""
        return self.prompt_rules(goal, code=code).to_plan_rules()
