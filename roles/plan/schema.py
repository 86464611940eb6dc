"""The structured messages the roles exchange: a plan, an executor's reply, a review verdict.

These are the contracts between tierd and the models. Models are asked for them with structured
output (a JSON schema) and their answers are parsed back into these types; the simulator answers
with the same shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StreamSpec(BaseModel):
    """One narrow piece of work that a single executor carries out."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=STREAM_ID_PATTERN, description="short unique id, e.g. 'research'")
    title: str = Field(min_length=1, max_length=200)
    job: str = Field(min_length=1, description="one sentence: what this stream does")
    instructions: str = Field(default="", description="how to do it")
    output_definition: str = Field(
        default="", description="what the output must contain; required by the validator"
    )
    ownership: list[str] = Field(
        default_factory=list,
        description="areas (paths, names, decisions) this stream alone may touch or decide",
    )
    depends_on: list[str] = Field(default_factory=list, description="ids of streams it needs")
    acceptance_check: str = Field(default="", description="how the orchestrator judges it")
    kind: Literal["tests", "implementation", "research", "writing", "analysis", "other"] = "other"
    attachments: list[str] = Field(
        default_factory=list,
        description="names of the task's attachments this stream's executor needs (it sees "
        "only these)",
    )
    #: How each of its attachments reaches the executor ("images", "description", "text",
    #: "text and images", "text and description"): set by tierd once the plan is valid, never
    #: by the planner (not in the schema the planner is given).
    attachment_delivery: SkipJsonSchema[dict[str, str]] = Field(default_factory=dict)


class AttachmentNote(BaseModel):
    """The planner's words about one attachment, for executors that cannot see it."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="the attachment's name, as the task lists it")
    description: str = Field(
        default="",
        description="what it shows or holds, everything an executor needs from it in words: "
        "read by an executor whose model cannot see images",
    )


class Plan(BaseModel):
    """The planner's answer: a few narrow streams plus how to recombine them."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(default="", description="the approach in two or three sentences")
    streams: list[StreamSpec] = Field(min_length=1)
    merge_instruction: str = Field(
        default="", description="how the orchestrator recombines the outputs into one result"
    )
    attachments: list[AttachmentNote] = Field(
        default_factory=list,
        description="a description of each attachment assigned to a stream that holds images",
    )

    def descriptions(self) -> dict[str, str]:
        """The planner's description of each attachment it described, by name."""
        return {note.name: note.description for note in self.attachments if note.description}


class ExecutorReply(BaseModel):
    """An executor's answer: its output, a question for the human, or a proposed split."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["output", "question", "split"] = "output"
    output: str | None = None
    question: str | None = None
    streams: list[StreamSpec] | None = Field(
        default=None, description="for kind='split': the sub-streams replacing this stream"
    )


class Review(BaseModel):
    """The orchestrator's verdict on one stream's output."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["accept", "fix", "redo", "escalate"]
    reason: str = ""
    fixed_output: str | None = Field(default=None, description="for 'fix': the corrected output")
    feedback: str | None = Field(default=None, description="for 'redo': what to change")
    question: str | None = Field(default=None, description="for 'escalate': what to ask")


class Conflict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    streams: list[str] = Field(default_factory=list)
    description: str = ""
    redo: list[str] = Field(default_factory=list, description="streams to send back")
    feedback: str = ""


class ConflictReport(BaseModel):
    """The orchestrator's look at all outputs together: do any contradict each other?"""

    model_config = ConfigDict(extra="ignore")

    conflicts: list[Conflict] = Field(default_factory=list)
    notes: str = ""
