"""The calls: what one request asks (read from tierd's headers and the body), and the log of
every call the simulator took with the statistics `GET /_sim/stats` serves.

The log records whether the client went away before the answer was sent, and the step each
call belongs to (tierd's `X-Tierd-Step` header: the call's memo key, `exec:a:r0:a0`,
`review:a:r0`, `plan:0`, ...), so a test can prove that no saved step was asked for again and
that cancelling a task closed its in-flight request.

For a call offering tools it also records the tools offered, the tool calls answered, the
tool results the request carried (the results new since the model's last answer, cut short),
so a test can assert what a tool-using executor was told, and the scenario's watched strings
(`watch`) found anywhere in the request body.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from daemon.tools.simulator.scenario import ROLE_OF_PURPOSE, Scenario

__all__ = [
    "CLIENT_CLOSED",
    "NO_RESPONSE",
    "PURPOSE_OF_SCHEMA",
    "CallInfo",
    "CallRecord",
    "SimState",
    "read_call",
    "watched_in",
]

# The structured-output schema names tierd sends, for clients that send no X-Tierd-Purpose.
PURPOSE_OF_SCHEMA = {
    "Plan": "plan",
    "ExecutorReply": "execute",
    "Review": "review",
    "ConflictReport": "conflicts",
}
#: HTTP status recorded for a call whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499
#: HTTP status recorded for a call whose connection the simulator dropped without an answer
#: (kind "reset"; nginx's "no response" convention).
NO_RESPONSE = 444
#: Characters of each new tool result kept in a call's record.
RESULT_CHARS = 2000


@dataclass
class CallInfo:
    """What one request is asking, read from its headers and body."""

    role: str
    purpose: str
    task_id: str
    stream_id: str | None
    round: int
    model: str
    streaming: bool
    include_usage: bool
    prompt: str
    schema_name: str | None
    #: The memo key of the step the call is for (`X-Tierd-Step`; None when not sent).
    step: str | None = None
    #: The names of the tools the request offers (None: no `tools`).
    tools: list[str] | None = None
    #: Where a code script stands: the model's answers in the conversation so far (one
    #: whose tool-call arguments were not JSON does not count: the model tries it again).
    code_step: int = 0
    #: Tool-result messages in the request, and the contents of those after the last answer.
    tool_results: int = 0
    new_results: list[str] = field(default_factory=list)


@dataclass
class CallRecord:
    """One call in the log; `status` stays None while it is in flight."""

    seq: int
    task_id: str
    stream_id: str | None
    role: str
    purpose: str
    model: str
    round: int
    streaming: bool
    started_mono: float
    started_wall: float
    ended_mono: float | None = None
    ended_wall: float | None = None
    status: int | None = None
    disconnected: bool = False
    injected: str | None = None
    #: The json_schema name of a structured-output request (None: plain request).
    schema: str | None = None
    #: The memo key of the step the call is for (`X-Tierd-Step`), None when not sent.
    step: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The tools offered (None: a call without tools) and the script step answered.
    tools: list[str] | None = None
    code_step: int | None = None
    #: The names of the tool calls answered, in order (None: no tool-call answer).
    tool_calls: list[str] | None = None
    #: Tool-result messages the request carried; the contents of the new ones (cut short).
    tool_results: int = 0
    new_results: list[str] = field(default_factory=list)
    #: The scenario's `watch` strings found in the request body.
    watched: list[str] = field(default_factory=list)

    def finish(self, status: int, disconnected: bool = False) -> None:
        """The call ended with `status` (CLIENT_CLOSED when its client left first)."""
        self.ended_mono, self.ended_wall = time.monotonic(), time.time()
        self.status, self.disconnected = status, disconnected


@dataclass
class SimState:
    """The simulator's mutable state: the scenario, counters and the call records."""

    scenario: Scenario
    scale: float
    records: list[CallRecord] = field(default_factory=list)
    rule_hits: Counter[int] = field(default_factory=Counter)
    repeats: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    splits_done: set[tuple[str, str]] = field(default_factory=set)

    def reset(self) -> None:
        self.records.clear()
        self.rule_hits.clear()
        self.repeats.clear()
        self.splits_done.clear()

    def record(self, call: CallInfo) -> CallRecord:
        """Log a call that starts now."""
        rec = CallRecord(
            seq=len(self.records) + 1,
            task_id=call.task_id,
            stream_id=call.stream_id,
            role=call.role,
            purpose=call.purpose,
            model=call.model,
            round=call.round,
            streaming=call.streaming,
            schema=call.schema_name,
            step=call.step,
            tools=call.tools,
            code_step=call.code_step if call.tools is not None else None,
            tool_results=call.tool_results,
            new_results=list(call.new_results),
            started_mono=time.monotonic(),
            started_wall=time.time(),
        )
        self.records.append(rec)
        return rec

    def _count(self, key: Callable[[CallRecord], Any], only_ok: bool = False) -> dict[str, int]:
        c: Counter[str] = Counter()
        for r in self.records:
            if not only_ok or r.status == 200:
                c[str(key(r))] += 1
        return dict(sorted(c.items()))

    def stats(self) -> dict[str, Any]:
        def stream_key(r: CallRecord) -> str:
            return f"{r.task_id}/{r.stream_id or '-'}"

        count = self._count
        return {
            "scenario": self.scenario.name,
            "scale": self.scale,
            "total": len(self.records),
            "answered": sum(1 for r in self.records if r.status == 200),
            "in_flight": sum(1 for r in self.records if r.status is None),
            "disconnected": sum(1 for r in self.records if r.disconnected),
            "by_role": count(lambda r: r.role),
            "by_purpose": count(lambda r: r.purpose),
            "by_model": count(lambda r: r.model),
            "by_status": count(lambda r: r.status),
            "by_stream": count(stream_key),
            "answered_by_role": count(lambda r: r.role, True),
            "answered_by_purpose": count(lambda r: r.purpose, True),
            "answered_by_stream": count(stream_key, True),
            "watched": {w: sum(w in r.watched for r in self.records) for w in self.scenario.watch},
            "calls": [vars(r) for r in self.records],
        }


def _prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _valid_arguments(message: dict[str, Any]) -> bool:
    """Whether every tool call of an assistant message has JSON object arguments."""
    for raw in message.get("tool_calls") or []:
        function = raw.get("function") if isinstance(raw, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments.strip():
            try:
                json.loads(arguments)
            except ValueError:
                return False
    return True


def _conversation(messages: list[Any]) -> tuple[int, int, list[str]]:
    """The code script's step (see `CallInfo.code_step`), the number of tool results, and
    the contents of those after the model's last answer."""
    step = results = 0
    new: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            step += _valid_arguments(message)
            new = []
        elif message.get("role") == "tool":
            results += 1
            content = message.get("content")
            new.append(content[:RESULT_CHARS] if isinstance(content, str) else str(content))
    return step, results, new


def _tool_names(body: dict[str, Any]) -> list[str] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            names.append(str(function.get("name")))
    return names


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def watched_in(raw: str, body: dict[str, Any], watch: list[str]) -> list[str]:
    """The `watch` strings the request carries: in the raw body, or in any string of the
    parsed one (JSON escapes could hide one from the raw text)."""
    if not watch:
        return []
    strings = _strings(body)
    return [w for w in watch if w in raw or any(w in s for s in strings)]


def read_call(request: Request, body: dict[str, Any]) -> CallInfo:
    """What a chat-completions request asks, from tierd's X-Tierd-* headers and the body."""
    h = request.headers
    schema_name = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
        schema_name = fmt["json_schema"].get("name")
    purpose = (
        h.get("x-tierd-purpose")
        or PURPOSE_OF_SCHEMA.get(schema_name or "")
        or {"planner": "plan", "executor": "execute"}.get(h.get("x-tierd-role", ""))
        or "chat"
    )
    role = h.get("x-tierd-role") or ROLE_OF_PURPOSE.get(purpose, "executor")
    try:
        round_ = int(h.get("x-tierd-round", "0"))
    except ValueError:
        round_ = 0
    options = body.get("stream_options") or {}
    code_step, tool_results, new_results = _conversation(body.get("messages") or [])
    return CallInfo(
        role=role,
        purpose=purpose,
        task_id=h.get("x-tierd-task", "-"),
        stream_id=h.get("x-tierd-stream") or None,
        round=round_,
        model=str(body.get("model") or "sim"),
        streaming=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
        prompt=_prompt_text(body),
        schema_name=schema_name,
        step=h.get("x-tierd-step") or None,
        tools=_tool_names(body),
        code_step=code_step,
        tool_results=tool_results,
        new_results=new_results,
    )
