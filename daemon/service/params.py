"""Pydantic models of the API's inputs: one definition shared by JSON-RPC, REST and OpenRPC."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATES = Literal[
    "queued",
    "planning",
    "running",
    "reviewing",
    "merging",
    "input_required",
    "awaiting_approval",
    "completed",
    "failed",
    "canceled",
]


#: The largest integer any numeric input may hold: SQLite's INTEGER is a signed 64-bit number,
#: and a larger one overflows where it is written or compared, far from the input. Inputs
#: with a tighter range (limit, max_streams) say so themselves.
MAX_INT64 = 2**63 - 1
#: An event id: a non-negative integer that fits SQLite's INTEGER.
MAX_EVENT_ID = MAX_INT64


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskOptions(Strict):
    """Per-task settings; each one overrides the configuration for this task only."""

    approval: Literal["none", "required"] | None = None
    project_dir: str | None = Field(default=None, description="project root with .tierd.toml")
    parallelize: Literal["when-possible", "always", "never"] | None = None
    coupled: list[list[str]] | None = None
    instructions: list[str] | None = None
    max_streams: int | None = Field(default=None, ge=1, le=200, strict=True)


#: An idempotency key: visible ASCII (no spaces or control characters), e.g. a UUID.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]+$"
IDEMPOTENCY_KEY_MAX = 128
IDEMPOTENCY_KEY_DOC = (
    "optional client-chosen key (1-128 visible ASCII characters, e.g. a UUID) that makes the "
    "submit safe to retry: a submit whose key already names a task creates nothing and answers "
    "that task's id and current state with duplicate=true; the same key with a different goal, "
    "context, options, repo, base, include_uncommitted or attachments is refused (-32602 / "
    "HTTP 422, field idempotency_key). Keys are kept with their task, across restarts."
)


#: The longest `repo` path taken (Linux's PATH_MAX) and the longest `base` ref.
REPO_MAX = 4096
BASE_MAX = 1024
REPO_DOC = (
    "a code task: the absolute path of a git work tree on the daemon's machine (symlinks are "
    "resolved; the task works on its top level). The task works from a commit (see base) in "
    "worktrees of its own: the user's working tree, index and branches are never touched. "
    "Refused (-32602 / HTTP 422, field repo) when it is not absolute, not a git work tree, or "
    "inside tierd's own home. Absent: a text task."
)
BASE_DOC = (
    "with repo: the ref (branch, tag, commit) the task starts from; default HEAD. Refused "
    "(field base) when it does not resolve to a commit."
)
INCLUDE_UNCOMMITTED_DOC = (
    "with repo: start from HEAD plus the work tree's uncommitted changes (staged or not, and "
    "untracked files not ignored), snapshot into a commit object without touching the index; "
    "base must then be HEAD. Default false: uncommitted changes are not part of the base."
)


ATTACHMENTS_DOC = (
    "files handed over with the task (PNG, JPEG, WebP and GIF images, PDF documents, CSV and "
    "XLSX spreadsheets): the planner sees them all, each executor the ones the plan gives its "
    "stream. Limits per file and per task in the [attachments] configuration table; a file "
    "refused (its type, size, or content that cannot be read) refuses the submit (-32602 / "
    "HTTP 422 naming attachments[i] and its name; data lists what is accepted), and nothing "
    "is stored. REST also takes them as multipart/form-data (see POST /v1/tasks)."
)
ATTACHMENT_NAME_MAX = 255


class AttachmentParams(Strict):
    """One attachment of a submit: its file name, media type and base64 content."""

    name: str = Field(
        min_length=1,
        max_length=ATTACHMENT_NAME_MAX,
        description="the file's name (no path separators): the plan and prompts refer to it",
    )
    media_type: str = Field(
        default="",
        max_length=255,
        description="its media type, e.g. application/pdf; checked against the content's "
        "first bytes. Empty or application/octet-stream: told by the content (and a .csv name)",
    )
    data: str = Field(description="the file's bytes, base64 (RFC 4648; whitespace ignored)")


class SubmitParams(Strict):
    goal: str = Field(min_length=1, description="what the task should achieve")
    context: str = Field(default="", description="background the planner should know")
    options: TaskOptions = Field(default_factory=TaskOptions)
    repo: str | None = Field(default=None, min_length=1, max_length=REPO_MAX, description=REPO_DOC)
    base: str | None = Field(default=None, min_length=1, max_length=BASE_MAX, description=BASE_DOC)
    include_uncommitted: bool = Field(
        default=False, strict=True, description=INCLUDE_UNCOMMITTED_DOC
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=IDEMPOTENCY_KEY_DOC,
    )
    attachments: list[AttachmentParams] = Field(
        default_factory=list, max_length=1000, description=ATTACHMENTS_DOC
    )


#: The alias of the most recent task (the newest submit), wherever a task id is taken.
LAST_TASK = "@last"
TASK_ID_DOC = (
    "a task's id, a unique prefix of one (at least 4 characters, as git takes commits; an "
    "ambiguous prefix is refused with -32602 naming the candidates in data.candidates), or "
    f"{LAST_TASK!r} for the most recent task"
)
STATE_DOC = "only tasks in this state, or in any of these states (a list)"


class TaskIdParams(Strict):
    task_id: str = Field(min_length=1, max_length=64, description=TASK_ID_DOC)


class ListParams(Strict):
    state: STATES | Annotated[list[STATES], Field(min_length=1, max_length=10)] | None = Field(
        default=None, description=STATE_DOC
    )
    # strict: JSON true is not the number 1, nor "5" a number (REST converts its query first).
    limit: int = Field(default=50, ge=1, le=500, strict=True)
    cursor: str | None = Field(default=None, max_length=64)

    def states(self) -> list[str] | None:
        """The states asked for, each once, in order; None: every state."""
        if self.state is None:
            return None
        asked = [self.state] if isinstance(self.state, str) else self.state
        return list(dict.fromkeys(asked))


class AnswerParams(Strict):
    task_id: str = Field(min_length=1, max_length=64, description=TASK_ID_DOC)
    answers: dict[str, str] = Field(min_length=1, description="question id -> answer text")


class ApproveParams(Strict):
    task_id: str = Field(min_length=1, max_length=64, description=TASK_ID_DOC)
    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=20000)
    apply: Literal["branch", "merge", "patch"] | None = Field(
        default=None,
        description="code tasks, with approve: leave the result on its branch (default), "
        "merge it into your current branch (refused, changing nothing, when that would touch "
        "your uncommitted work or conflict with your commits), or write a patch file",
    )


class ConfigGetParams(Strict):
    key: str | None = None


class ConfigSetParams(Strict):
    key: str = Field(min_length=1)
    value: Any


class NoParams(Strict):
    pass
