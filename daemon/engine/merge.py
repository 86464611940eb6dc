"""The merge point and the optional approval gate.

The orchestrator recombines the accepted outputs into one result. With review.approval =
"required" the result waits for the human: an approval completes the task, a rejection sends
the result back to the orchestrator with the human's comment (a revision), at most
review.max_revisions times; one more rejection fails the task.
"""

from __future__ import annotations

from daemon.engine.context import TaskContext
from daemon.engine.errors import TaskFailed
from daemon.engine.human import HumanWaits
from daemon.engine.lifecycle import TaskStates
from daemon.store.states import TaskState
from roles import orchestrator
from roles.plan.schema import Plan

__all__ = ["MergeGate"]


class MergeGate:
    """Merges the outputs; with approval required, until the human approves a revision."""

    def __init__(self, ctx: TaskContext, states: TaskStates, human: HumanWaits) -> None:
        self.ctx = ctx
        self.states = states
        self.human = human

    async def merge_and_approve(self, plan: Plan, outputs: dict[str, str]) -> str:
        """The merge, then the optional approval gate: a rejection sends the result back to
        the orchestrator with the human's comment, up to review.max_revisions times."""
        approval = self.ctx.settings.approval
        max_revisions = self.ctx.settings.max_revisions
        feedback: str | None = None
        result: str | None = None
        revision = 0
        await self.states.enter(TaskState.merging)
        while True:
            result = await orchestrator.merge(
                self.ctx.call,
                self.ctx.row.goal,
                plan,
                outputs,
                self.ctx.rules,
                revision=revision,
                feedback=feedback,
                previous_result=result,
            )
            if approval != "required":
                return result
            decision = await self.human.await_decision(result, revision)
            if decision["decision"] == "approve":
                return result
            comment = (decision.get("comment") or "").strip()
            if revision >= max_revisions:
                raise TaskFailed(
                    f"the result was rejected {revision + 1} time(s); review.max_revisions "
                    f"({max_revisions}) allows no further revision. Last comment: "
                    f"{comment or '(none)'}"
                )
            feedback = comment or "The human rejected the result without a comment."
            revision += 1
            # The rejection itself moved the task to merging (Store.decide); a revised merge
            # follows at once.
