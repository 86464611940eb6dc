"""Code scenarios: a tool-using executor's answers, scripted per stream (the `[code]` table).

The orchestrator's own tool loop when a review says "fix" (purpose "fix") follows the script
`fix:<stream>` (or `fix:<stream>@r<round>` for one review round); see `_fix_script`.

A call that offers `tools` is answered with the next step of its stream's script: one tool
call, several, text, or text beside calls. The simulator keeps no state for this: the step is
the number of the model's answers already in the request's conversation (`CallInfo.code_step`),
so a resumed loop that sends the same conversation again gets the same step, and an answer
whose arguments were not JSON (a `malformed` fault) is tried again rather than skipped. A
script used up answers `finish` with a summary naming the stream.

Faults apply as to any answer: `empty` gives neither text nor calls, `malformed` cuts the
first call's arguments in half (or the text, for a text-only step), `wrapped` changes nothing
(there is no JSON content to wrap); the rest act on the wire as for any call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from daemon.tools.simulator.calls import CallInfo
from daemon.tools.simulator.scenario import CodeStep, FailureRule, Scenario

__all__ = ["CodeAnswer", "code_answer", "spoil_code"]


@dataclass
class CodeAnswer:
    """A scripted answer: its text (may be empty) and its tool calls in OpenAI's format."""

    text: str
    tool_calls: list[dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return [c["function"]["name"] for c in self.tool_calls]

    def size(self) -> str:
        """What the answer's token count is drawn from."""
        return self.text + "".join(json.dumps(c) for c in self.tool_calls)


def _fill(value: Any, sid: str, round_: int) -> Any:
    """`value` with {stream} and {round} replaced in every string inside it."""
    if isinstance(value, str):
        return value.replace("{stream}", sid).replace("{round}", str(round_))
    if isinstance(value, dict):
        return {k: _fill(v, sid, round_) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, sid, round_) for v in value]
    return value


def _finish(sid: str) -> CodeStep:
    return CodeStep(tool="finish", args={"summary": f"Stream {sid}: the work is done (simulated)."})


def _fix_script(scenario: Scenario, sid: str, round_: int) -> list[CodeStep] | None:
    """The orchestrator's fix of stream `sid` (purpose "fix"): `fix:<sid>@r<round>`, then
    `fix:<sid>`; unscripted, a planned stream's fix finishes at once (its coder's script is
    not the orchestrator's), while the merge point's (`_result`) keeps its plain script."""
    streams = scenario.code.streams
    for key in (f"fix:{sid}@r{round_}", f"fix:{sid}"):
        if key in streams:
            return streams[key]
    if sid.startswith("_"):
        return None
    summary = f"Stream {sid}: fixed by the orchestrator (simulated)."
    return [CodeStep(tool="finish", args={"summary": summary})]


def code_answer(scenario: Scenario, call: CallInfo) -> CodeAnswer:
    """The answer to a call offering tools: its stream's script at `call.code_step` (the
    orchestrator's fix script for a call whose purpose is "fix")."""
    sid = call.stream_id or "stream"
    script = _fix_script(scenario, sid, call.round) if call.purpose == "fix" else None
    if script is None:
        script = scenario.code.script(sid, call.round)
    step = script[call.code_step] if call.code_step < len(script) else _finish(sid)
    calls = [
        {
            # Unique within the conversation, and the same when the step is asked again.
            "id": f"call_{sid}_r{call.round}_{call.code_step}_{index}",
            "type": "function",
            "function": {
                "name": tool.tool,
                "arguments": json.dumps(_fill(tool.args, sid, call.round)),
            },
        }
        for index, tool in enumerate(step.tool_steps())
    ]
    return CodeAnswer(_fill(step.say or "", sid, call.round), calls)


def spoil_code(answer: CodeAnswer, failure: FailureRule | None) -> CodeAnswer:
    """The answer as a failure of kind empty or malformed leaves it."""
    if failure is None:
        return answer
    if failure.kind == "empty":
        return CodeAnswer("", [])
    if failure.kind == "malformed":
        if not answer.tool_calls:
            return CodeAnswer(answer.text[: max(1, len(answer.text) // 2)], [])
        first = json.loads(json.dumps(answer.tool_calls[0]))  # a deep copy
        arguments = first["function"]["arguments"]
        first["function"]["arguments"] = arguments[: max(1, len(arguments) // 2)]
        return CodeAnswer(answer.text, [first, *answer.tool_calls[1:]])
    return answer
