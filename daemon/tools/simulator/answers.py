"""The answers of each role, as the scenario says: the content text of one call.

`plan` -> a `roles.plan.schema.Plan` as JSON (or a broken one, for the first attempts the
scenario says), `execute` -> an `ExecutorReply` (an output, a question, or a split),
`review` -> a `Review`, `conflicts` -> a `ConflictReport`, `fix` and `merge` -> plain text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from daemon.tools.simulator.calls import CallInfo, SimState
from daemon.tools.simulator.plans import invalid_plan
from daemon.tools.simulator.scenario import Scenario, StreamBehaviour
from roles.plan.schema import ConflictReport, ExecutorReply, Review

__all__ = ["Answerer"]

_OUTPUT_RE = re.compile(r'<output stream="([^"]+)">\n(.*?)\n</output>', re.S)
_REASONS = {
    "accept": "The output meets its definition and acceptance check.",
    "fix": "A small defect the orchestrator corrects itself.",
    "redo": "The output misses part of its definition.",
    "escalate": "This needs a human decision.",
}


def _pick(items: list[str], round_: int) -> str:
    # Rounds past the list (conflict redos use round 100+) take the last entry.
    return items[min(round_, len(items) - 1)]


class Answerer:
    """Turns a call into the assistant's content text, as the scenario says."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    @property
    def sc(self) -> Scenario:
        return self.state.scenario

    def answer(self, call: CallInfo) -> str:
        method: Callable[[CallInfo], str] | None = getattr(self, f"_{call.purpose}", None)
        if method is None:
            return f"(simulated {call.role} reply)"
        return method(call)

    def _plan(self, call: CallInfo) -> str:
        valid = self.sc.valid_plan()
        if call.round < self.sc.plan.invalid_first:
            kinds = self.sc.plan.invalid
            return invalid_plan(valid, kinds[call.round % len(kinds)])
        return valid.model_dump_json()

    def _output_text(self, call: CallInfo) -> str:
        sid = call.stream_id or "stream"
        behaviour = self.sc.streams.get(sid)
        out = behaviour.output if behaviour else None
        if out is None:
            text = (
                f"Output of stream '{sid}' (round {call.round}): the work this stream was "
                "asked for, complete and ready for review."
            )
        else:
            text = _pick(out, call.round) if isinstance(out, list) else out
        return text.replace("{stream}", sid).replace("{round}", str(call.round))

    def _execute(self, call: CallInfo) -> str:
        sid = call.stream_id or "stream"
        behaviour = self.sc.streams.get(sid)
        if behaviour and behaviour.reply == "question" and behaviour.question not in call.prompt:
            # Asked until the prompt carries the answer to this very question.
            reply = ExecutorReply(kind="question", question=behaviour.question)
        elif (
            behaviour
            and behaviour.reply == "split"
            and call.round == 0
            and (call.task_id, sid) not in self.state.splits_done
        ):
            self.state.splits_done.add((call.task_id, sid))
            reply = ExecutorReply(kind="split", streams=behaviour.split)
        else:
            reply = ExecutorReply(kind="output", output=self._output_text(call))
        return reply.model_dump_json(exclude_none=True)

    def _review(self, call: CallInfo) -> str:
        behaviour = self.sc.streams.get(call.stream_id or "") or StreamBehaviour()
        verdicts = behaviour.review
        verdict = verdicts[call.round] if call.round < len(verdicts) else "accept"
        review = Review(verdict=verdict, reason=behaviour.reason or _REASONS[verdict])
        if verdict == "redo":
            review.feedback = behaviour.feedback or "Cover every point of the output definition."
        elif verdict == "fix":
            review.fixed_output = behaviour.fixed_output
        elif verdict == "escalate":
            review.question = behaviour.escalate_question or "How should this stream proceed?"
        return review.model_dump_json(exclude_none=True)

    def _conflicts(self, call: CallInfo) -> str:
        rounds = self.sc.conflict_rounds
        report = (
            rounds[call.round]
            if call.round < len(rounds)
            else ConflictReport(notes="The outputs are consistent with each other.")
        )
        return report.model_dump_json()

    def _fix(self, call: CallInfo) -> str:
        behaviour = self.sc.streams.get(call.stream_id or "")
        if behaviour and behaviour.fixed_output:
            return behaviour.fixed_output
        return f"Output of stream '{call.stream_id}', corrected by the orchestrator."

    def _merge(self, call: CallInfo) -> str:
        found = _OUTPUT_RE.findall(call.prompt)
        outputs = "\n\n".join(f"## {sid}\n\n{text.strip()}" for sid, text in found)
        template = self.sc.merge_output or "# Result\n\n{outputs}"
        return template.replace("{outputs}", outputs or "(no outputs)")

    def _chat(self, call: CallInfo) -> str:
        return "This is a simulated answer."
