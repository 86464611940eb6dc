"""The store's tables: one sqlmodel class per table, with the names and columns on disk.

These names and columns are the database's format: a database written by an earlier tierd
must still open, so a change here needs a migration (see `daemon.store.migrations`).
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel, UniqueConstraint


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    id: str = Field(primary_key=True)
    state: str = Field(index=True)
    goal: str
    context: str = ""
    options_json: str = "{}"
    created_at: float
    updated_at: float
    result: str | None = None
    report_json: str | None = None
    error: str | None = None
    plan_json: str | None = None
    settings_json: str | None = None
    # The client's idempotency key: unique, so two submits with one key make one task (NULLs
    # do not collide). Written in the transaction that creates the task.
    idempotency_key: str | None = Field(default=None, unique=True, index=True)
    # A code task's repository facts as a JSON object (repo, base, base_commit, ...): written
    # at submit, merged into by the engine (`set_task_code`); None for a text task.
    code_json: str | None = None
    # The daemon that runs the task and until when it may (schema v7; `daemon.store.leases`):
    # the database's clock, in seconds since the epoch. NULL: nobody holds it.
    lease_owner: str | None = None
    lease_expires_at: float | None = None


class StreamRow(SQLModel, table=True):
    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("task_id", "stream_id"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True, foreign_key="tasks.id")
    stream_id: str
    parent_id: str | None = None
    title: str = ""
    spec_json: str = "{}"
    state: str = "pending"
    output: str | None = None
    verdict: str | None = None
    reason: str | None = None
    rounds: int = 0
    depth: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    # A code stream's facts as a JSON object (branch, files, commands, steps, ...), written
    # whole by the engine with each update; None for a text stream.
    code_json: str | None = None


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    # AUTOINCREMENT: ids are never reused, so Last-Event-ID stays meaningful forever.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    task_id: str | None = Field(default=None, index=True)
    type: str
    data_json: str = "{}"
    created_at: float


class UsageRow(SQLModel, table=True):
    __tablename__ = "usage"
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True)
    stream_id: str | None = None
    role: str
    purpose: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    outcome: str = "ok"
    attempts: int = 1
    error: str | None = None
    started_at: float = 0.0
    #: Prompt tokens read from the provider's prompt cache (part of prompt_tokens; schema v6).
    #: The server default gives the rows from before v6 their 0 (the migration adds it so).
    cached_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class StepRow(SQLModel, table=True):
    """A finished unit of work (a model call's parsed result), keyed within its task.

    This is what makes "a finished stream is never called again" hold even if the workflow's
    own checkpoint cannot be matched after a crash: every role call looks here first.
    """

    __tablename__ = "steps"
    task_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value_json: str
    created_at: float


class QuestionRow(SQLModel, table=True):
    __tablename__ = "questions"
    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    stream_id: str | None = None
    question: str
    answer: str | None = None
    created_at: float
    answered_at: float | None = None


class AttachmentRow(SQLModel, table=True):
    """One file handed over with a task (schema v5): its metadata; the bytes and what was read
    out of them are files in `folder`, the task's private attachments folder."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("task_id", "position"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True, foreign_key="tasks.id")
    #: Its index in the submit's list (the order the planner sees them in).
    position: int
    name: str
    media_type: str
    #: "image", "pdf" or "table".
    kind: str
    sha256: str
    size: int
    #: The folder holding its content (named by sha256) and the files below.
    folder: str
    #: The extracted text (PDF pages, table cells), a file in `folder`; None for an image.
    text_file: str | None = None
    #: One line about its shape, as the prompts show it.
    summary: str = ""
    #: Pages rendered as images: [{"page": n, "file": name in `folder`}].
    renders_json: str = "[]"
    #: What the reading found (pages without text, sheets and rows, an image's size, cuts).
    facts_json: str = "{}"
    created_at: float


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str
