"""The merge point and the optional approval gate.

The orchestrator recombines the accepted outputs into one result; for a code task git merges
the accepted branches and tierd tests the merged result (`code.merge_point`). With review.approval =
"required" the result waits for the human: an approval completes the task, a rejection sends
the result back to the orchestrator with the human's comment (a revision), at most
review.max_revisions times; one more rejection fails the task.
"""

from __future__ import annotations

from daemon.engine.code.merge_point import CodeMerge, result_text
from daemon.engine.context import TaskContext
from daemon.engine.errors import TaskFailed
from daemon.engine.human import HumanWaits
from daemon.engine.lifecycle import TaskStates
from daemon.store.states import TaskState
from roles import orchestrator
from roles.plan.schema import Plan
from roles.prompts import TaskBrief

__all__ = ["MergeGate"]


class MergeGate:
    """Merges the outputs; with approval required, until the human approves a revision."""

    def __init__(
        self,
        ctx: TaskContext,
        states: TaskStates,
        human: HumanWaits,
        code: CodeMerge | None = None,
        brief: TaskBrief | None = None,
    ) -> None:
        self.ctx = ctx
        self.states = states
        self.human = human
        #: A code task's merge: git merges the branches, tierd tests the result.
        self.code = code
        #: The task's material with its plan: the merge prompt's shared prefix.
        self.brief = brief

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
            if self.code is not None:
                result = await self._code_result(plan, revision, feedback)
            else:
                result = await orchestrator.merge(
                    self.ctx.call,
                    self.ctx.row.goal,
                    plan,
                    outputs,
                    self.ctx.rules,
                    revision=revision,
                    feedback=feedback,
                    previous_result=result,
                    context=self.ctx.row.context,
                    brief=self.brief,
                )
            if approval != "required":
                return result
            decision = await self.human.await_decision(result, revision)
            if decision["decision"] == "approve":
                return result
            comment = (decision.get("comment") or "").strip()
            if revision >= max_revisions:
                raise TaskFailed(
                    f"the result was rejected {_times(revision + 1)}; review.max_revisions "
                    f"({max_revisions}) allows no further revision. Last comment: "
                    f"{comment or '(none)'}"
                )
            feedback = comment or "The human rejected the result without a comment."
            revision += 1
            # The rejection itself moved the task to merging (Store.decide); a revised merge
            # follows at once.

    async def _code_result(self, plan: Plan, revision: int, feedback: str | None) -> str:
        """The branches merged and tested (revised with the human's comment after a
        rejection), described for the person who decides."""
        assert self.code is not None
        if revision == 0:
            merged = await self.code.merge(plan)
        else:
            merged = await self.code.revise(feedback or "", revision)
        summaries = await self.code.code.summaries([s.id for s in plan.streams])
        return result_text(self.ctx.row.goal, merged, summaries)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
