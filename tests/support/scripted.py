"""A scripted model for fast in-process tests: a `roles.calls.Caller` that answers from a script.

Like the OpenAI Agents SDK's `agents.testing` fake model: no HTTP, no litellm, no simulator;
a role (or the whole engine) is handed this caller instead of the model gateway, and each
call is answered by the first rule whose pattern matches the call's memo key:

    model = ScriptedCaller({
        "plan:*": [cyclic_plan, good_plan],             # one answer per call, the last repeats
        "exec:s1:*": {"kind": "output", "output": "A"},
        "review:s1:r0": Review(verdict="redo", reason="too short", feedback="longer"),
        "conflicts:*": ModelOutputError("orchestrator/conflicts: never parsed", role=...),
    })
    outcome = await make_plan(model, ...)
    assert model.keys("plan:*") == ["plan:0", "plan:1"]

An answer is a string (the text; for a structured call it must parse as the structure, else
the call raises ModelOutputError as the real gateway does once its repairs are used up), a
dict or pydantic model (structured data), a `ToolCall` or a list of them (an answer asking
for those tool calls, for a call with `tools`; in a rule's list of answers, one answer with
two calls is `[[call_a, call_b]]`), a `CallOutput` (returned as it is: text and
tool calls together), an exception (raised), or a function of the `Call` returning any of
these (it may be async: a test can hold a call until it says so). Calls no
rule matches get a sensible default by purpose (the executor outputs "Output of <stream>",
reviews accept, no conflicts, the merge joins its inputs); a plan has no default.

`ScriptedCaller.models` fits where the engine takes a models factory: the engine then runs on
the script, and every call is recorded as a `UsageRecord` like a real one.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from roles.calls import CallOutput, ToolCall
from roles.models.errors import ModelOutputError
from roles.models.structured import parse
from roles.models.tier import ModelTier
from roles.models.usage import OnRecord, UsageRecord, emit

#: The model name scripted calls are recorded under when no tier names one.
SCRIPTED_MODEL = "scripted"


@dataclass
class Call:
    """One call a role made, as the caller saw it."""

    role: str
    purpose: str
    key: str
    messages: list[dict[str, Any]]
    stream_id: str | None
    round: int
    response_model: type[BaseModel] | None
    tools: list[dict[str, Any]] | None = None

    @property
    def prompt(self) -> str:
        """Every message's text content, one after the other."""
        return "\n".join(m["content"] for m in self.messages if isinstance(m.get("content"), str))

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools the call offered."""
        return [t["function"]["name"] for t in self.tools or []]


Answer = Any  # str | dict | BaseModel | BaseException | Callable[[Call], Answer]


def _default(call: Call) -> Answer:
    if call.purpose == "execute":
        return {"kind": "output", "output": f"Output of stream '{call.stream_id}'"}
    if call.purpose in ("review", "fix"):
        return {"verdict": "accept", "reason": "meets the output definition"}
    if call.purpose == "conflicts":
        return {"conflicts": []}
    if call.purpose == "merge":
        return f"Merged result (revision {call.round})"
    raise LookupError(f"no scripted answer for {call.role}/{call.purpose} (key {call.key!r})")


class ScriptedCaller:
    """Answers calls from a script of (key pattern, answers) rules; remembers every call."""

    def __init__(self, script: Mapping[str, Answer | Sequence[Answer]] | None = None) -> None:
        self._rules: list[tuple[str, list[Answer]]] = []
        self._used: dict[str, int] = {}
        self.calls: list[Call] = []
        self.tiers: Mapping[str, ModelTier] = {}
        self.task_id = "scripted-task"
        self.on_record: OnRecord | None = None
        for pattern, answers in (script or {}).items():
            self.add(pattern, answers)

    def add(self, pattern: str, answers: Answer | Sequence[Answer]) -> ScriptedCaller:
        """A rule: calls whose key matches `pattern` (fnmatch) get `answers`, one per call
        (a list), the last one again and again. Earlier rules win."""
        if isinstance(answers, list | tuple):
            listed = list(answers)
        else:
            listed = [answers]
        self._rules.append((pattern, listed))
        return self

    def models(
        self, tiers: Mapping[str, ModelTier], task_id: str, on_record: OnRecord
    ) -> ScriptedCaller:
        """A models factory for the engine: this caller, recording usage through `on_record`."""
        self.tiers, self.task_id, self.on_record = tiers, task_id, on_record
        return self

    def keys(self, pattern: str = "*") -> list[str]:
        """The keys of the calls made so far that match `pattern`, in order."""
        return [c.key for c in self.calls if fnmatch.fnmatchcase(c.key, pattern)]

    def of(self, pattern: str) -> list[Call]:
        """The calls made so far whose key matches `pattern`, in order."""
        return [c for c in self.calls if fnmatch.fnmatchcase(c.key, pattern)]

    def _answer_for(self, call: Call) -> Answer:
        for index, (pattern, answers) in enumerate(self._rules):
            if fnmatch.fnmatchcase(call.key, pattern):
                rule = f"{index}:{pattern}"
                used = self._used.get(rule, 0)
                self._used[rule] = used + 1
                return answers[min(used, len(answers) - 1)]
        return _default

    async def __call__(
        self,
        role: str,
        purpose: str,
        messages: list[dict[str, Any]],
        *,
        key: str,
        stream_id: str | None = None,
        round: int = 0,
        response_model: type[BaseModel] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> CallOutput:
        # A copy: the caller goes on appending to its conversation after the call.
        call = Call(role, purpose, key, list(messages), stream_id, round, response_model, tools)
        self.calls.append(call)
        answer = self._answer_for(call)
        while callable(answer) and not isinstance(answer, type | BaseModel):
            answer = answer(call)
            if inspect.isawaitable(answer):
                answer = await answer
        if isinstance(answer, BaseException) or (
            isinstance(answer, type) and issubclass(answer, BaseException)
        ):
            await self._record(call, "", outcome="error", error=str(answer))
            raise answer
        out = _output(call, answer)
        await self._record(call, out.text)
        return out

    async def _record(self, call: Call, text: str, **kw: Any) -> None:
        tier = self.tiers.get(call.role)
        record = UsageRecord(
            task_id=self.task_id,
            stream_id=call.stream_id,
            role=call.role,
            purpose=call.purpose,
            model=tier.model if tier else SCRIPTED_MODEL,
            # About four characters a token: enough for reports to add up.
            prompt_tokens=max(1, len(call.prompt) // 4),
            completion_tokens=max(1, len(text) // 4),
            round=call.round,
            **kw,
        )
        await emit(self.on_record, record)


def _output(call: Call, answer: Answer) -> CallOutput:
    """The caller's output for `answer`, parsed as the call's structure as the gateway does."""
    structure = call.response_model
    if isinstance(answer, CallOutput):
        return answer
    if isinstance(answer, ToolCall):
        answer = [answer]
    if isinstance(answer, list) and answer and all(isinstance(a, ToolCall) for a in answer):
        if not call.tools:
            raise TypeError(f"{call.key!r} offered no tools: cannot answer with tool calls")
        return CallOutput("", None, list(answer))
    if isinstance(answer, BaseModel):
        answer = answer.model_dump()
    if isinstance(answer, str):
        if structure is None:
            return CallOutput(answer)
        try:
            parsed = parse(answer, structure)
        except ValueError as exc:
            raise ModelOutputError(
                f"{call.role}/{call.purpose}: the answer of {SCRIPTED_MODEL} never parsed as "
                f"{structure.__name__}: {exc}",
                answer,
                role=call.role,
                model=SCRIPTED_MODEL,
            ) from exc
        return CallOutput(answer, parsed.model_dump())
    if isinstance(answer, dict):
        text = json.dumps(answer)
        if structure is None:
            return CallOutput(text)
        return CallOutput(text, structure.model_validate(answer).model_dump())
    raise TypeError(f"cannot answer {call.key!r} with {answer!r}")
