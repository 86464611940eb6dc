"""The scenario: what the simulator answers, as a validated model, and where scenarios are found.

A scenario is a TOML file (or the same structure as a dict); the format is described in
`daemon/tools/simulator/scenarios/README.md`. Every model here forbids unknown keys, so a typo
in a scenario file fails loudly instead of silently doing nothing.
"""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from daemon.tools.simulator.plans import describe_attachments, generate_streams
from roles.plan.schema import AttachmentNote, ConflictReport, Plan, StreamSpec

if TYPE_CHECKING:
    from daemon.tools.simulator.calls import CallInfo

__all__ = [
    "PURPOSES",
    "ROLES",
    "ROLE_OF_PURPOSE",
    "Amount",
    "CodeScenario",
    "CodeStep",
    "FailureKind",
    "FailureRule",
    "GeneratedPlan",
    "InvalidKind",
    "PlanScenario",
    "RoleAmounts",
    "Scenario",
    "StreamBehaviour",
    "ToolStep",
    "draw",
    "load_scenario",
    "same_model",
    "scenarios_dir",
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


def _check_amount(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] > value[1] or value[0] < 0:
            raise ValueError(f"a range must be [min, max] with 0 <= min <= max, not {value!r}")
        return (float(value[0]), float(value[1]))
    if value is not None and float(value) < 0:
        raise ValueError(f"must not be negative, not {value!r}")
    return value


def draw(amount: Amount, rng: random.Random) -> float:
    """The amount itself, or a uniform draw from its [min, max] range."""
    if isinstance(amount, tuple):
        return rng.uniform(amount[0], amount[1])
    return float(amount)


def same_model(wanted: str, asked: str) -> bool:
    """Whether a request for `asked` is one for the scenario's model name `wanted`."""
    # litellm strips the provider prefix before sending ("openai/gpt-5" arrives as "gpt-5").
    return asked in (wanted, wanted.split("/", 1)[-1])


def _first_invalid_kinds() -> list[InvalidKind]:
    return ["cycle"]


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
    #: The planner's descriptions of attachments (streams name theirs in `attachments`); an
    #: attachment a stream names without one here gets a stock description.
    attachments: list[AttachmentNote] = Field(default_factory=list)
    #: The first N plan attempts (X-Tierd-Round < N) get an invalid plan ...
    invalid_first: int = Field(default=0, ge=0)
    #: ... of these kinds, in turn.
    invalid: list[InvalidKind] = Field(default_factory=_first_invalid_kinds)

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
    connection dropped without a response). See daemon/tools/simulator/scenarios/README.md.
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
            and (self.model is None or same_model(self.model, call.model))
        )


class ToolStep(_Model):
    """One scripted tool call: the tool's name and its arguments ({stream}, {round} in any
    string are replaced by the stream id and the round)."""

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class CodeStep(_Model):
    """One answer of a code script: a tool call (`tool`), several (`calls`), text (`say`),
    or text beside the call(s)."""

    tool: str | None = Field(default=None, min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    calls: list[ToolStep] | None = None
    say: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CodeStep:
        if self.tool is not None and self.calls is not None:
            raise ValueError("a code step has 'tool' or 'calls', not both")
        if self.tool is None and self.args:
            raise ValueError("'args' needs 'tool'")
        if self.calls is not None and not self.calls:
            raise ValueError("'calls' must not be empty")
        if self.tool is None and self.calls is None and not self.say:
            raise ValueError("a code step needs 'tool', 'calls' or 'say'")
        return self

    def tool_steps(self) -> list[ToolStep]:
        if self.tool is not None:
            return [ToolStep(tool=self.tool, args=self.args)]
        return list(self.calls or [])


def _default_script() -> list[CodeStep]:
    return [CodeStep(tool="list_files")]


class CodeScenario(_Model):
    """What a tool-using executor does: a script of answers per stream (see `code.py`)."""

    #: Scripts by stream id; "s01@r1" is stream s01's script in review round 1.
    streams: dict[str, list[CodeStep]] = Field(default_factory=dict)
    #: The script of every stream not listed.
    default: list[CodeStep] = Field(default_factory=_default_script)

    def script(self, stream_id: str, round_: int) -> list[CodeStep]:
        """The script of `stream_id` in round `round_`."""
        for key in (f"{stream_id}@r{round_}", stream_id):
            if key in self.streams:
                return self.streams[key]
        return self.default


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
    #: The scripts of tool-using executors (calls that offer `tools`).
    code: CodeScenario = Field(default_factory=CodeScenario)
    #: Strings looked for in every request body (e.g. a planted secret): each call's record
    #: lists those it carried, and the stats count them.
    watch: list[str] = Field(default_factory=list)

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
        return generate_streams(self.plan.generate or GeneratedPlan(), self.seed)

    def valid_plan(self) -> Plan:
        streams = self.plan_streams()
        summary = self.plan.summary or f"{len(streams)} streams, recombined at one merge point."
        return Plan(
            summary=summary,
            streams=streams,
            merge_instruction=self.plan.merge_instruction
            or "Combine the outputs in plan order into one result.",
            attachments=describe_attachments(streams, self.plan.attachments),
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
