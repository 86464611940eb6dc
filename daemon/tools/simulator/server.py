"""An OpenAI-compatible model server that answers tierd's roles by a scenario.

Tests, the benchmark and the offline demo need models that are fast, free and deterministic
yet exercise the real path: this is a real HTTP server (FastAPI + uvicorn) speaking the chat
completions protocol, so the real litellm client, timeouts, retries and cancellation are all
exercised. It reads what it is asked from the headers tierd sends with every call:

    X-Tierd-Role     planner | executor | orchestrator
    X-Tierd-Purpose  plan | execute | review | conflicts | fix | merge
    X-Tierd-Task     the task id
    X-Tierd-Stream   the stream id (execute, review, fix)
    X-Tierd-Round    redo round, or plan attempt (int)

and answers as the scenario says (see `daemon/scenarios/README.md` for the file format):
`plan` -> a `roles.schemas.Plan` as JSON, `execute` -> an `ExecutorReply`, `review` -> a
`Review`, `conflicts` -> a `ConflictReport`, `fix` and `merge` -> plain text.

Everything random (latencies, token counts, failure rates) is drawn from an RNG seeded by the
scenario seed and the call's identity (task, stream, purpose, round, repeat number), not from
a shared stream: concurrent runs get the same numbers whatever order calls arrive in.

It counts and records every call (`GET /_sim/stats`, cleared by `POST /_sim/reset`), including
whether the client went away before the answer was sent, so a test can prove that no finished
stream was called twice and that cancelling a task closed its in-flight request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roles.plan.schema import ConflictReport, ExecutorReply, Plan, Review, StreamSpec

__all__ = [
    "FailureRule",
    "GeneratedPlan",
    "PlanScenario",
    "Scenario",
    "SimulatorThread",
    "StreamBehaviour",
    "create_sim_app",
    "load_scenario",
    "run_simulator_cli",
    "scenarios_dir",
    "serve_simulator",
]

ROLES = ("planner", "executor", "orchestrator")
PURPOSES = ("plan", "execute", "review", "conflicts", "fix", "merge")
ROLE_OF_PURPOSE = {
    "plan": "planner",
    "execute": "executor",
    "review": "orchestrator",
    "conflicts": "orchestrator",
    "fix": "orchestrator",
    "merge": "orchestrator",
}
# The structured-output schema names tierd sends, for clients that send no X-Tierd-Purpose.
PURPOSE_OF_SCHEMA = {
    "Plan": "plan",
    "ExecutorReply": "execute",
    "Review": "review",
    "ConflictReport": "conflicts",
}
JSON_PURPOSES = frozenset({"plan", "execute", "review", "conflicts"})
#: How often a waiting answer checks whether its client has gone away.
DISCONNECT_POLL_S = 0.05
#: HTTP status recorded for a call whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499

# A number of seconds or tokens: fixed, or drawn uniformly from [min, max].
Amount = float | tuple[float, float]
InvalidKind = Literal[
    "cycle",
    "duplicate_id",
    "missing_output_definition",
    "unknown_dependency",
    "self_dependency",
    "overlapping_ownership",
    "no_streams",
    "malformed",
]
FailureKind = Literal[
    "429", "500", "timeout", "malformed", "wrapped", "truncated", "empty", "reset"
]
#: HTTP status recorded for a call whose connection the simulator dropped without an answer
#: (kind "reset"; nginx's "no response" convention).
NO_RESPONSE = 444


def _check_amount(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] > value[1] or value[0] < 0:
            raise ValueError(f"a range must be [min, max] with 0 <= min <= max, not {value!r}")
        return (float(value[0]), float(value[1]))
    if value is not None and float(value) < 0:
        raise ValueError(f"must not be negative, not {value!r}")
    return value


def _draw(amount: Amount, rng: random.Random) -> float:
    if isinstance(amount, tuple):
        return rng.uniform(amount[0], amount[1])
    return float(amount)


class _Model(BaseModel):
    # A typo in a scenario file should fail loudly, not silently do nothing.
    model_config = ConfigDict(extra="forbid")


class RoleAmounts(_Model):
    """One amount per role (seconds of latency, or completion tokens)."""

    planner: Amount | None = None
    orchestrator: Amount | None = None
    executor: Amount | None = None

    @field_validator("planner", "orchestrator", "executor", mode="before")
    @classmethod
    def _amount(cls, v: Any) -> Any:
        return _check_amount(v)

    def get(self, role: str) -> Amount | None:
        return getattr(self, role, None)


class GeneratedPlan(_Model):
    """A plan shape generated from a few numbers instead of listed stream by stream."""

    width: int = Field(default=3, ge=1, le=500, description="number of streams")
    pattern: Literal["independent", "chain", "layers", "random", "fan_in"] = "independent"
    depth: int = Field(default=3, ge=1, description="layers, for pattern 'layers'")
    max_deps: int = Field(default=2, ge=1, description="most dependencies per stream")
    edge_prob: float = Field(default=0.3, ge=0, le=1, description="for pattern 'random'")
    seed: int | None = None
    kind: str = "other"
    prefix: str = "s"


class PlanScenario(_Model):
    """What the planner answers: explicit streams, or a generated shape."""

    summary: str = ""
    merge_instruction: str = ""
    streams: list[StreamSpec] | None = None
    generate: GeneratedPlan | None = None
    #: The first N plan attempts (X-Tierd-Round < N) get an invalid plan ...
    invalid_first: int = Field(default=0, ge=0)
    #: ... of these kinds, in turn.
    invalid: list[InvalidKind] = Field(default_factory=lambda: ["cycle"])

    @model_validator(mode="after")
    def _one_shape(self) -> PlanScenario:
        if self.streams is not None and self.generate is not None:
            raise ValueError("plan: give either 'streams' or 'generate', not both")
        if self.streams is not None and not self.streams:
            raise ValueError("plan.streams must not be empty")
        if not self.invalid:
            raise ValueError("plan.invalid must name at least one kind")
        return self


class StreamBehaviour(_Model):
    """Per-stream overrides, keyed by stream id (sub-streams too, e.g. 'research.a')."""

    latency: Amount | None = None
    completion_tokens: Amount | None = None
    #: The output text; a list gives one per redo round (the last one for later rounds).
    output: str | list[str] | None = None
    reply: Literal["output", "question", "split"] = "output"
    question: str = "Which option should this stream assume?"
    split: list[StreamSpec] = Field(default_factory=list)
    #: Review verdicts by round; rounds past the list (and conflict redos) are accepted.
    review: list[Literal["accept", "fix", "redo", "escalate"]] = Field(default_factory=list)
    reason: str | None = None
    feedback: str | None = None
    fixed_output: str | None = None
    escalate_question: str | None = None

    @field_validator("latency", "completion_tokens", mode="before")
    @classmethod
    def _amount(cls, v: Any) -> Any:
        return _check_amount(v)

    @model_validator(mode="after")
    def _split_needs_streams(self) -> StreamBehaviour:
        if self.reply == "split" and not self.split:
            raise ValueError("reply = 'split' needs a non-empty 'split' list of sub-streams")
        return self


class FailureRule(_Model):
    """Inject a failure into matching calls: the first N of them, or at a rate.

    Kinds: 429 (with Retry-After), 500 (any 4xx/5xx `status`), timeout (hang `hang_s`),
    malformed (JSON content cut in half), wrapped (JSON in prose), truncated (the HTTP body
    or SSE stream itself cut half way), empty (200 with empty content), reset (the
    connection dropped without a response). See daemon/scenarios/README.md.
    """

    kind: FailureKind
    role: str | None = None
    purpose: str | None = None
    model: str | None = None
    stream: str | None = None
    first: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0, le=1)
    retry_after: float = Field(default=1.0, ge=0, description="seconds, for kind '429'")
    status: int = Field(default=500, ge=400, le=599, description="for kind '500'")
    hang_s: float = Field(default=600.0, ge=0, description="for kind 'timeout' (not scaled)")

    @field_validator("kind", mode="before")
    @classmethod
    def _int_kind(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    def matches(self, call: CallInfo) -> bool:
        return (
            (self.role is None or self.role == call.role)
            and (self.purpose is None or self.purpose == call.purpose)
            and (self.stream is None or self.stream == call.stream_id)
            and (self.model is None or _same_model(self.model, call.model))
        )


class Scenario(_Model):
    """Everything the simulator answers, loaded from a TOML file or a dict."""

    name: str = "default"
    description: str = ""
    seed: int = 0
    #: Multiplies every latency (not Retry-After, not the hang of an injected timeout).
    scale: float = Field(default=1.0, ge=0)
    latency: RoleAmounts = Field(
        default_factory=lambda: RoleAmounts(
            planner=(2.0, 6.0), orchestrator=(2.0, 6.0), executor=(1.0, 4.0)
        )
    )
    #: Per-purpose latency, overriding the role's (e.g. a quick review, a slow merge).
    purpose_latency: dict[str, Amount] = Field(default_factory=dict)
    #: Completion tokens per role; unset: the answer's length / 4.
    completion_tokens: RoleAmounts = Field(default_factory=RoleAmounts)
    #: Fixed prompt tokens; unset: the prompt's length / 4.
    prompt_tokens: Amount | None = None
    plan: PlanScenario = Field(default_factory=PlanScenario)
    streams: dict[str, StreamBehaviour] = Field(default_factory=dict)
    #: The conflict report of each conflict-check round; later rounds find none.
    conflict_rounds: list[ConflictReport] = Field(default_factory=list)
    #: The merged result; `{outputs}` is replaced by the outputs found in the merge prompt.
    merge_output: str | None = None
    failures: list[FailureRule] = Field(default_factory=list)
    #: Model names that always answer 500 (to test fallbacks).
    fail_models: list[str] = Field(default_factory=list)

    @field_validator("prompt_tokens", mode="before")
    @classmethod
    def _amount(cls, v: Any) -> Any:
        return _check_amount(v)

    @field_validator("purpose_latency", mode="before")
    @classmethod
    def _check_purposes(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for key, amount in v.items():
                if key not in PURPOSES:
                    raise ValueError(f"purpose_latency: unknown purpose {key!r}")
                v[key] = _check_amount(amount)
        return v

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        path = Path(path)
        with path.open("rb") as f:
            data = tomllib.load(f)
        data.setdefault("name", path.stem)
        return cls.model_validate(data)

    def plan_streams(self) -> list[StreamSpec]:
        """The streams of the valid plan this scenario answers."""
        if self.plan.streams is not None:
            return [s.model_copy(deep=True) for s in self.plan.streams]
        return _generate(self.plan.generate or GeneratedPlan(), self.seed)

    def valid_plan(self) -> Plan:
        streams = self.plan_streams()
        summary = self.plan.summary or f"{len(streams)} streams, recombined at one merge point."
        return Plan(
            summary=summary,
            streams=streams,
            merge_instruction=self.plan.merge_instruction
            or "Combine the outputs in plan order into one result.",
        )


def scenarios_dir() -> Path:
    """Where the shipped scenarios are."""
    return Path(__file__).resolve().parent / "scenarios"


def load_scenario(source: str | Path | dict[str, Any] | Scenario | None = None) -> Scenario:
    """A scenario from a file path, a shipped scenario's name ('sales_lead'), a dict, or None
    (the shipped sales-lead scenario)."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return Scenario.model_validate(source)
    if source is None:
        source = "sales_lead"
    path = Path(source)
    if not path.is_file():
        shipped = scenarios_dir() / (path.name if path.suffix else f"{path.name}.toml")
        if not shipped.is_file():
            names = ", ".join(sorted(p.stem for p in scenarios_dir().glob("*.toml")))
            raise FileNotFoundError(f"no scenario file {str(source)!r} (shipped: {names})")
        path = shipped
    return Scenario.from_toml(path)


def _same_model(wanted: str, asked: str) -> bool:
    # litellm strips the provider prefix before sending ("openai/gpt-5" arrives as "gpt-5").
    return asked in (wanted, wanted.split("/", 1)[-1])


# --- plans ------------------------------------------------------------------------------------


def _generate(gen: GeneratedPlan, seed: int) -> list[StreamSpec]:
    rng = random.Random(f"plan|{seed if gen.seed is None else gen.seed}")
    digits = max(2, len(str(gen.width)))
    ids = [f"{gen.prefix}{i + 1:0{digits}d}" for i in range(gen.width)]
    deps: dict[str, list[str]] = {sid: [] for sid in ids}
    if gen.pattern == "chain":
        for prev, cur in itertools.pairwise(ids):
            deps[cur] = [prev]
    elif gen.pattern == "layers":
        depth = min(gen.depth, gen.width)
        bounds = [round(i * len(ids) / depth) for i in range(depth + 1)]
        layers = [ids[bounds[i] : bounds[i + 1]] for i in range(depth)]
        for below, layer in itertools.pairwise(layers):
            for sid in layer:
                deps[sid] = sorted(rng.sample(below, min(len(below), rng.randint(1, gen.max_deps))))
    elif gen.pattern == "random":
        for i, sid in enumerate(ids):
            earlier = [e for e in ids[:i] if rng.random() < gen.edge_prob]
            deps[sid] = sorted(rng.sample(earlier, min(len(earlier), gen.max_deps)))
    elif gen.pattern == "fan_in" and gen.width > 1:
        deps[ids[-1]] = ids[:-1]
    return [
        StreamSpec(
            id=sid,
            title=f"Part {i + 1}",
            job=f"Produce part {i + 1} of the result.",
            output_definition=f"A short text for part {i + 1}.",
            ownership=[f"part-{i + 1}/"],
            depends_on=deps[sid],
            acceptance_check="The text covers the part.",
            kind=gen.kind,
        )
        for i, sid in enumerate(ids)
    ]


def _invalid_plan(valid: Plan, kind: InvalidKind) -> str:
    """A plan the validator (or the schema) refuses, as the planner's answer text."""
    if kind == "malformed":
        return 'Here is the plan: {"summary": "unfinished'
    if kind == "no_streams":
        return json.dumps({"summary": valid.summary, "streams": []})
    streams = [s.model_dump() for s in valid.streams]
    first, last = streams[0], streams[-1]
    if kind == "cycle":
        if len(streams) == 1:
            first["depends_on"].append(first["id"])
        else:
            first["depends_on"].append(last["id"])
            last["depends_on"].append(first["id"])
    elif kind == "self_dependency":
        first["depends_on"].append(first["id"])
    elif kind == "duplicate_id":
        if len(streams) == 1:
            streams.append(dict(first, ownership=["elsewhere/"]))
        else:
            streams[1]["id"] = first["id"]
    elif kind == "missing_output_definition":
        first["output_definition"] = ""
    elif kind == "unknown_dependency":
        first["depends_on"].append("no-such-stream")
    elif kind == "overlapping_ownership":
        if len(streams) == 1:
            streams.append(dict(first, id=f"{first['id']}-2"))
        first["ownership"] = ["shared/"]
        streams[1]["ownership"] = ["shared/"]
    data = valid.model_dump()
    data["streams"] = streams
    return json.dumps(data)


# --- calls, records, stats --------------------------------------------------------------------


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


@dataclass
class CallRecord:
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
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


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

    def stats(self) -> dict[str, Any]:
        def count(key: Any, only_ok: bool = False) -> dict[str, int]:
            c: Counter[str] = Counter()
            for r in self.records:
                if not only_ok or r.status == 200:
                    c[str(key(r))] += 1
            return dict(sorted(c.items()))

        def stream_key(r: CallRecord) -> str:
            return f"{r.task_id}/{r.stream_id or '-'}"

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


def _call_info(request: Request, body: dict[str, Any]) -> CallInfo:
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
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
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
        prompt="\n".join(parts),
        schema_name=schema_name,
    )


# --- answers ----------------------------------------------------------------------------------


def _pick(items: list[str], round_: int) -> str:
    # Rounds past the list (conflict redos use round 100+) take the last entry.
    return items[min(round_, len(items) - 1)]


_OUTPUT_RE = re.compile(r'<output stream="([^"]+)">\n(.*?)\n</output>', re.S)


class Answerer:
    """Turns a call into the assistant's content text, as the scenario says."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    @property
    def sc(self) -> Scenario:
        return self.state.scenario

    def answer(self, call: CallInfo) -> str:
        method = getattr(self, f"_{call.purpose}", None)
        if method is None:
            return f"(simulated {call.role} reply)"
        return method(call)

    def _plan(self, call: CallInfo) -> str:
        valid = self.sc.valid_plan()
        if call.round < self.sc.plan.invalid_first:
            kinds = self.sc.plan.invalid
            return _invalid_plan(valid, kinds[call.round % len(kinds)])
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
        review = Review(
            verdict=verdict,
            reason=behaviour.reason
            or {
                "accept": "The output meets its definition and acceptance check.",
                "fix": "A small defect the orchestrator corrects itself.",
                "redo": "The output misses part of its definition.",
                "escalate": "This needs a human decision.",
            }[verdict],
        )
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


# --- the app ----------------------------------------------------------------------------------


def _error(
    status: int, message: str, type_: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": type_}},
        status_code=status,
        headers=headers,
    )


class Simulator:
    """The request handling behind `create_sim_app`."""

    def __init__(self, scenario: Scenario, scale: float | None = None) -> None:
        # A startup scale multiplies the scenario's own, so `--scale 0.1` shrinks any file.
        self.state = SimState(scenario, scenario.scale * (1.0 if scale is None else scale))
        self.answerer = Answerer(self.state)
        #: The uvicorn server serving this app (set by `_server`), for kind "reset".
        self.server: uvicorn.Server | None = None

    def _rng(self, call: CallInfo, what: str, repeat: int) -> random.Random:
        # str seeds hash deterministically (sha512), unlike hash() of a tuple.
        return random.Random(
            f"{self.state.scenario.seed}|{what}|{call.task_id}|"
            f"{call.stream_id}|{call.purpose}|{call.round}|{call.model}|{repeat}"
        )

    def _latency(self, call: CallInfo, rng: random.Random) -> float:
        sc = self.state.scenario
        behaviour = sc.streams.get(call.stream_id or "")
        amount: Amount | None = None
        if call.purpose == "execute" and behaviour and behaviour.latency is not None:
            amount = behaviour.latency
        elif call.purpose in sc.purpose_latency:
            amount = sc.purpose_latency[call.purpose]
        else:
            amount = sc.latency.get(call.role)
        return _draw(amount, rng) * self.state.scale if amount is not None else 0.0

    def _tokens(self, call: CallInfo, content: str, rng: random.Random) -> tuple[int, int]:
        sc = self.state.scenario
        prompt = (
            round(_draw(sc.prompt_tokens, rng))
            if sc.prompt_tokens is not None
            else math.ceil(len(call.prompt) / 4)
        )
        behaviour = sc.streams.get(call.stream_id or "")
        amount = (
            behaviour.completion_tokens
            if call.purpose == "execute" and behaviour and behaviour.completion_tokens is not None
            else sc.completion_tokens.get(call.role)
        )
        completion = (
            round(_draw(amount, rng)) if amount is not None else math.ceil(len(content) / 4)
        )
        return max(1, prompt), max(1, completion)

    def _failure(self, call: CallInfo, rng: random.Random) -> FailureRule | None:
        sc = self.state.scenario
        if any(_same_model(m, call.model) for m in sc.fail_models):
            return FailureRule(kind="500", status=500)
        chosen = None
        for index, rule in enumerate(sc.failures):
            if not rule.matches(call):
                continue
            self.state.rule_hits[index] += 1
            if chosen is None and (
                self.state.rule_hits[index] <= rule.first or rng.random() < rule.rate
            ):
                chosen = rule
        return chosen

    async def _wait(self, request: Request, seconds: float) -> bool:
        """Sleep `seconds`, or until the client goes away; True if it did."""
        deadline = time.monotonic() + seconds
        while True:
            if await request.is_disconnected():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(DISCONNECT_POLL_S, left))

    def _finish(self, rec: CallRecord, status: int, disconnected: bool = False) -> None:
        rec.ended_mono, rec.ended_wall = time.monotonic(), time.time()
        rec.status, rec.disconnected = status, disconnected

    async def chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list", "invalid_request_error")
        call = _call_info(request, body)
        key = (call.task_id, call.stream_id, call.purpose, call.round, call.model)
        repeat = self.state.repeats[key]
        self.state.repeats[key] += 1
        rng = self._rng(call, "call", repeat)
        rec = CallRecord(
            seq=len(self.state.records) + 1,
            task_id=call.task_id,
            stream_id=call.stream_id,
            role=call.role,
            purpose=call.purpose,
            model=call.model,
            round=call.round,
            streaming=call.streaming,
            schema=call.schema_name,
            started_mono=time.monotonic(),
            started_wall=time.time(),
        )
        self.state.records.append(rec)
        try:
            return await self._respond(request, call, rec, rng)
        except asyncio.CancelledError:
            # The server is shutting down (or cancelled the handler): the client got nothing.
            if rec.status is None:
                self._finish(rec, CLIENT_CLOSED, disconnected=True)
            raise

    async def _respond(
        self, request: Request, call: CallInfo, rec: CallRecord, rng: random.Random
    ) -> Response:
        latency = self._latency(call, rng)
        failure = self._failure(call, rng)
        rec.latency_s = latency
        rec.injected = failure.kind if failure else None
        if failure is not None and failure.kind == "timeout":
            gone = await self._wait(request, failure.hang_s)
            self._finish(rec, CLIENT_CLOSED if gone else 504, disconnected=gone)
            return _error(504, "simulated timeout", "timeout")
        if failure is not None and failure.kind == "reset":
            # Dropped at once, as a crashing provider or a proxy restart does.
            self._finish(rec, NO_RESPONSE)
            self._drop_connection(request)
            return Response(status_code=NO_RESPONSE)
        if failure is not None and failure.kind in ("429", "500"):
            # Errors come back fast, as real providers' do.
            if await self._wait(request, min(latency, 0.01)):
                self._finish(rec, CLIENT_CLOSED, disconnected=True)
                return Response(status_code=CLIENT_CLOSED)
            if failure.kind == "429":
                self._finish(rec, 429)
                headers = {"Retry-After": str(math.ceil(failure.retry_after))}
                if failure.retry_after != math.ceil(failure.retry_after):
                    headers["retry-after-ms"] = str(round(failure.retry_after * 1000))
                return _error(429, "simulated rate limit: slow down", "rate_limit_error", headers)
            self._finish(rec, failure.status)
            return _error(
                failure.status, f"simulated server error for model {call.model}", "server_error"
            )

        content = self.answerer.answer(call)
        if failure is not None and failure.kind == "empty":
            content = ""  # every purpose: an empty merge is as useless as an empty plan
        if failure is not None and call.purpose in JSON_PURPOSES:
            if failure.kind == "malformed":
                content = content[: max(1, len(content) // 2)]  # cut mid-object: not JSON
            elif failure.kind == "wrapped":
                content = f"Sure, here it is:\n```json\n{content}\n```\nAnything else?"
        prompt_tokens, completion_tokens = self._tokens(call, content, rng)
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, completion_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-sim-{uuid.uuid4().hex[:20]}"
        truncated = failure is not None and failure.kind == "truncated"
        if call.streaming:
            return StreamingResponse(
                self._sse(request, call, rec, content, usage, ident, latency, truncated),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        if await self._wait(request, latency):
            self._finish(rec, CLIENT_CLOSED, disconnected=True)
            return Response(status_code=CLIENT_CLOSED)
        self._finish(rec, 200)
        answer = {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": "tierd-sim",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": usage,
        }
        if truncated:
            # A well-framed 200 whose JSON body stops half way, as a proxy that gave up does.
            body = json.dumps(answer).encode()
            return Response(body[: len(body) // 2], media_type="application/json")
        return JSONResponse(answer)

    def _drop_connection(self, request: Request) -> None:
        """Close the request's TCP connection with a reset, sending nothing.

        ASGI gives an app no way to drop its connection, so this finds uvicorn's protocol
        object for the client's address among the server's connections.
        """
        client = request.scope.get("client")
        server = self.server
        for conn in list(server.server_state.connections) if server is not None else []:
            transport = getattr(conn, "transport", None)
            if client is None or transport is None or conn.client != tuple(client):
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: the close sends RST, the client sees "connection reset by peer".
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        raise RuntimeError("simulator: cannot find the connection to reset")

    async def _sse(
        self,
        request: Request,
        call: CallInfo,
        rec: CallRecord,
        content: str,
        usage: dict[str, int],
        ident: str,
        latency: float,
        truncated: bool = False,
    ) -> Any:
        pieces = [content[i : i + 40] for i in range(0, len(content), 40)] or [""]
        if truncated:
            # The stream ends half way: no finish_reason, no usage, no [DONE].
            pieces = pieces[: max(1, len(pieces) // 2)]
        # Half the latency before the first token, the rest spread over the pieces.
        first_wait, per_piece = latency / 2, latency / 2 / len(pieces)
        created = int(time.time())

        def chunk(
            delta: dict[str, Any], finish: str | None = None, with_usage: bool = False
        ) -> str:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": call.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                data["choices"], data["usage"] = [], usage
            return f"data: {json.dumps(data)}\n\n"

        try:
            if await self._wait(request, first_wait):
                self._finish(rec, CLIENT_CLOSED, disconnected=True)
                return
            yield chunk({"role": "assistant", "content": ""})
            for piece in pieces:
                if await self._wait(request, per_piece):
                    self._finish(rec, CLIENT_CLOSED, disconnected=True)
                    return
                yield chunk({"content": piece})
            if truncated:
                self._finish(rec, 200)
                return
            yield chunk({}, finish="stop")
            if call.include_usage:
                yield chunk({}, with_usage=True)
            yield "data: [DONE]\n\n"
            self._finish(rec, 200)
        except (asyncio.CancelledError, GeneratorExit):
            # Starlette cancels the body when the client disconnects mid-stream.
            if rec.status is None:
                self._finish(rec, CLIENT_CLOSED, disconnected=True)
            raise


def create_sim_app(
    scenario: Scenario | dict[str, Any] | str | Path | None = None, *, scale: float | None = None
) -> FastAPI:
    """The simulator as an ASGI app. `scale` multiplies the scenario's latency scale."""
    sim = Simulator(load_scenario(scenario), scale)
    app = FastAPI(title="tierd model simulator", docs_url=None, redoc_url=None)
    app.state.sim = sim

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await sim.chat(request)

    @app.get("/v1/models")
    @app.get("/models")
    async def models() -> dict[str, Any]:
        names = ["gpt-5", "gpt-5-mini", "sim-premium", "sim-cheap"]
        names += [m for m in sim.state.scenario.fail_models if m not in names]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "tierd-sim"} for n in names
            ],
        }

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return sim.state.stats()

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        sim.state.reset()
        return {"ok": True}

    @app.get("/_sim/scenario")
    async def get_scenario() -> dict[str, Any]:
        return {"scale": sim.state.scale, "scenario": sim.state.scenario.model_dump(mode="json")}

    @app.post("/_sim/scenario")
    async def set_scenario(request: Request) -> Response:
        """Swap the scenario (body: a scenario, optional "scale" multiplying its own);
        clears the stats."""
        try:
            body = await request.json()
            new_scale = body.pop("scale", None) if isinstance(body, dict) else None
            scenario = Scenario.model_validate(body.get("scenario", body))
        except ValueError as exc:
            return _error(400, f"invalid scenario: {exc}", "invalid_request_error")
        sim.state.scenario = scenario
        sim.state.scale = scenario.scale * (1.0 if new_scale is None else float(new_scale))
        sim.state.reset()
        return JSONResponse({"ok": True, "name": scenario.name, "scale": sim.state.scale})

    return app


# --- running it -------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP, not 0: asyncio only turns Nagle off (TCP_NODELAY) for sockets that
    # say they are TCP, and with Nagle on every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(app: FastAPI, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        access_log=False,
        # Injected timeouts hang on purpose: do not wait for them at exit.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    app.state.sim.server = server
    return server


async def serve_simulator(
    scenario: Scenario | dict[str, Any] | str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8740,
    *,
    scale: float | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the simulator until cancelled or signalled."""
    sock = _bind(host, port)
    server = _server(create_sim_app(scenario, scale=scale), log_level)
    await server.serve(sockets=[sock])


def run_simulator_cli(
    port: int, scenario_path: str | Path | None, host: str = "127.0.0.1", scale: float = 1.0
) -> None:
    """`tierd simulate`: serve in the foreground until Ctrl-C."""
    scenario = load_scenario(scenario_path)
    sock = _bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    print(
        f"tierd simulator: scenario '{scenario.name}', latency scale {scale}, "
        f"OpenAI-compatible API at http://{shown_host}:{sock.getsockname()[1]}/v1",
        flush=True,
    )
    server = _server(create_sim_app(scenario, scale=scale), "warning")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(sockets=[sock]))


class SimulatorThread:
    """The simulator served from a background thread on a free loopback port.

    For tests, the demo and the benchmark: `with SimulatorThread(scenario) as sim: sim.url`.
    The thread has its own event loop, so it keeps answering while the caller's loop (or a
    blocking test) does something else.
    """

    def __init__(
        self,
        scenario: Scenario | dict[str, Any] | str | Path | None = None,
        *,
        scale: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = create_sim_app(scenario, scale=scale)
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = _server(self.app, "warning")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root, e.g. http://127.0.0.1:PORT (the OpenAI API is under /v1)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def sim(self) -> Simulator:
        return self.app.state.sim

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"tierd-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
