"""The calls: what one request asks (read from tierd's headers and the body), and the log of
every call the simulator took with the statistics `GET /_sim/stats` serves.

The log records whether the client went away before the answer was sent, and the step each
call belongs to (tierd's `X-Tierd-Step` header: the call's memo key, `exec:a:r0:a0`,
`review:a:r0`, `plan:0`, ...), so a test can prove that no saved step was asked for again and
that cancelling a task closed its in-flight request.
"""

from __future__ import annotations

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
    )
