"""What the parts of one task run share: the task, its settings and rules, the way to a model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daemon.engine.settings import TaskSettings
from daemon.store.store import Store, TaskRow
from roles.calls import Caller
from roles.plan.validator import PlanRules
from roles.prompts import PromptRules, goal_line

__all__ = ["TaskContext"]


@dataclass(frozen=True)
class TaskContext:
    """One task run's fixed facts: read once when the run starts, the same for every part."""

    store: Store
    row: TaskRow
    settings: TaskSettings
    #: The rules as the prompts state them, and as the validator enforces them.
    rules: PromptRules
    plan_rules: PlanRules
    #: Every model call of the run goes through this (the task's `TaskGateway`).
    call: Caller
    #: Returns once no model call of the run is in flight (`TaskGateway.settled`).
    settled: Callable[[], Awaitable[None]]

    @classmethod
    def of(
        cls,
        store: Store,
        row: TaskRow,
        settings: TaskSettings,
        call: Caller,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> TaskContext:
        # A task with a repository (its code_json names it) is a code task.
        rules = settings.prompt_rules(row.goal, code=bool(row.code_json))
        return cls(
            store, row, settings, rules, rules.to_plan_rules(), call, settled or _nothing_flies
        )

    @property
    def task_id(self) -> str:
        return self.row.id

    @property
    def goal_line(self) -> str:
        return goal_line(self.row.goal)


async def _nothing_flies() -> None:
    """`settled` of a caller that does not count its calls in flight."""
