"""Pydantic models of the service's answers: one definition for JSON-RPC, REST and their schemas.

Each method of the service returns one of these; the adapters write it as JSON (`wire`) and
describe it from the model (`/openapi.json`, `rpc/discover`). The JSON is the contract the CLI
and scripts read, so a field keeps its name, nesting and nulls: a model here describes what
clients already get, it does not redesign it. Stored JSON the service passes through as it was
written (a task's options, plan and report) stays an object here rather than being re-read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon.store.states import TaskState


def wire(result: BaseModel) -> dict[str, Any]:
    """The result as the JSON-ready dict every adapter sends."""
    return result.model_dump(mode="json")


class _Open(BaseModel):
    """A view of another part's snapshot: keys added there pass through unchanged."""

    model_config = ConfigDict(extra="allow")


# --- tasks -------------------------------------------------------------------------------------


class TaskSummary(BaseModel):
    """A task as `task/list` shows it."""

    id: str
    state: TaskState
    goal: str
    created_at: float = Field(description="Unix time of the submit")
    updated_at: float = Field(description="Unix time of the last change of state")
    error: str | None = Field(description="why the task failed, if it did")
    repo: str | None = Field(
        description="a code task's repository (its top level); null: a text task"
    )


class TierdTestRun(_Open):
    """tierd's own run of the test command (in the sandbox), not a model's claim."""

    command: str | None = None
    exit_code: int | None = Field(default=None, description="null: it did not exit (timed out)")
    duration_s: float | None = None
    output: str | None = Field(default=None, description="the end of what it printed")


class MergedResult(_Open):
    """A code task's merged change, once the accepted branches are merged."""

    branch: str = Field(description="tierd/<task>/_result")
    head: str = Field(description="its commit")
    files: list[str] = Field(default_factory=list, description="paths the change touches")
    insertions: int | None = None
    deletions: int | None = None
    tests: TierdTestRun | None = Field(default=None, description="the final test run on the merge")


class AppliedResult(_Open):
    """How an approved code task's result reached the user."""

    how: Literal["branch", "merge", "patch"]
    branch: str | None = Field(default=None, description="branch left, or merged into")
    commit: str | None = Field(default=None, description="merge: the merge commit")
    path: str | None = Field(default=None, description="patch: the patch file written")
    head: str | None = Field(default=None, description="the result's commit that was applied")
    already: bool | None = Field(
        default=None, description="true: this approval found the change already applied"
    )


class TaskCode(_Open):
    """A code task's repository and base, as checked at submit; the engine adds what it
    learns later (its branches, its clean-up), which passes through as it was written."""

    repo: str = Field(description="the work tree's top level, symlinks resolved")
    repo_given: str | None = Field(default=None, description="repo as the submit gave it")
    base: str = Field(description="the ref the task starts from, as given (default HEAD)")
    base_commit: str = Field(description="the commit base resolved to at submit")
    include_uncommitted: bool = False
    snapshot_commit: str | None = Field(
        default=None,
        description="with include_uncommitted: the commit of base_commit plus the uncommitted "
        "changes, which the task starts from; null when there were none",
    )
    result: MergedResult | None = Field(default=None, description="the merged change")
    applied: AppliedResult | None = Field(default=None, description="how it was applied")


class CommandRun(_Open):
    """A command a code stream ran (in its sandbox), and how it ended."""

    command: str | None = None
    name: str | None = Field(default=None, description="test, lint, shell, ...")
    exit_code: int | None = Field(default=None, description="null: it did not exit (timed out)")
    duration_s: float | None = None


class SetupRun(_Open):
    """The setup command run in a code stream's worktree before its executor started."""

    command: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    output_tail: str | None = None


class StreamFix(_Open):
    """The orchestrator's own fix of a code stream (a review said "fix")."""

    round: int
    problem: str | None = None
    by: str | None = None
    steps: int | None = None
    max_steps: int | None = None
    commands: list[CommandRun] = Field(default_factory=list)
    summary: str | None = Field(default=None, description="null: it did not finish")
    head: str | None = None
    files: list[str] = Field(default_factory=list)
    test_run: TierdTestRun | None = None
    outcome: Literal["fix", "redo"] | None = Field(
        default=None, description="fix: accepted as fixed; redo: back to the executor"
    )


class StreamCode(_Open):
    """What a code stream did in its worktree: filled in by the engine as it goes."""

    branch: str | None = None
    worktree: str | None = None
    start_commit: str | None = None
    head: str | None = Field(default=None, description="the branch's commit, once committed")
    files: list[str] = Field(default_factory=list, description="paths changed on the branch")
    insertions: int | None = None
    deletions: int | None = None
    commands: list[CommandRun] = Field(default_factory=list)
    steps: int | None = Field(default=None, description="model answers (steps) used")
    max_steps: int | None = None
    setup: SetupRun | None = None
    ended: str | None = Field(default=None, description="why the executor's loop ended")
    test_run: TierdTestRun | None = Field(
        default=None, description="tierd's own test run after the last round (or fix)"
    )
    fixes: list[StreamFix] = Field(
        default_factory=list, description="the orchestrator's own fixes, one per review round"
    )


class StreamView(BaseModel):
    """One stream of work in a task's plan, with its review."""

    id: str
    parent: str | None = Field(description="the stream this one was split from")
    title: str
    state: str
    depends_on: list[str] = Field(description="ids of the streams this one waits for")
    output: str | None
    verdict: str | None = Field(description="the orchestrator's review: accept, fix or redo")
    reason: str | None
    rounds: int = Field(description="review rounds so far")
    depth: int = Field(description="0 for a planned stream, n for the n-th level of splits")
    started_at: float | None
    ended_at: float | None
    code: StreamCode | None = Field(description="a code stream's facts; null: a text stream")


class QuestionView(BaseModel):
    """A question a stream asked the human, and the answer once given."""

    id: str
    stream_id: str | None
    question: str
    answer: str | None


class TaskDetail(TaskSummary):
    """A task with everything known about it: `task/get`."""

    context: str
    options: dict[str, Any] = Field(description="the task's options, as submitted")
    plan: dict[str, Any] | None = Field(description="the planner's plan, once there is one")
    streams: list[StreamView]
    questions: list[QuestionView]
    result: str | None = Field(description="the merged result, once the task completed")
    report: dict[str, Any] | None = Field(description="usage and outcome, once the task ended")
    code: TaskCode | None = Field(
        description="a code task's repository and base; null: a text task"
    )


class TaskPage(BaseModel):
    """One page of tasks, newest first."""

    tasks: list[TaskSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class Submitted(BaseModel):
    """The answer to a submit: the task's id at once, before any work."""

    task_id: str
    state: TaskState
    duplicate: bool = Field(
        default=False,
        # Absent, not false, for a new task: the field only ever says "this is a retry".
        exclude_if=lambda duplicate: not duplicate,
        description="present (true) when the idempotency key already named this task",
    )


class Canceled(BaseModel):
    task_id: str
    state: Literal[TaskState.canceled]


class Answered(BaseModel):
    task_id: str
    answered: list[str] = Field(description="ids of the questions this call answered")


class Decided(BaseModel):
    task_id: str
    decision: Literal["approve", "reject"]
    applied: AppliedResult | None = Field(
        default=None,
        description="a code task's result as applied: how (branch, merge, patch), and the "
        "branch and commit merged into, or the patch file's path",
    )


class DiffFile(BaseModel):
    """One file of a code task's merged change."""

    path: str
    insertions: int | None = Field(description="null for a binary file")
    deletions: int | None = Field(description="null for a binary file")


class TaskDiff(BaseModel):
    """A code task's merged result against its base."""

    task_id: str
    branch: str = Field(description="the branch holding the result")
    base_commit: str
    head: str
    files: list[DiffFile]
    patch: str = Field(description="the unified diff (git diff --binary)")
    truncated: bool = Field(description="true when the patch was cut (the file list is whole)")


# --- the daemon --------------------------------------------------------------------------------


class LimitChange(_Open):
    """The governor's last change of the agent limit (also sent as a `governor.limit` event)."""

    old: int
    new: int
    reason: str
    cause: str = Field(description="memory or ceiling")
    ceiling: int
    in_flight: int
    waiting: int
    used_fraction: float | None
    per_agent_estimate: int = Field(description="bytes")
    reaction_s: float | None = Field(description="seconds from the reading to the change")
    at: float = Field(description="Unix time")


class MemoryView(_Open):
    """The memory reading the governor acts on, in bytes, and its thresholds."""

    total: int | None
    available: int | None
    used_fraction: float | None
    daemon_rss: int | None = Field(description="the daemon and its child processes")
    per_agent_estimate: int
    source: str | None = Field(description="what bounds the daemon: the machine or a cgroup")
    soft: float
    hard: float
    reserve_bytes: int


class ConcurrencyView(_Open):
    """How many agents may run now, and why."""

    limit: int = Field(description="agents allowed to run now; 0 while paused")
    target: int
    ceiling: int
    floor: int
    in_flight: int
    waiting: int
    memory: MemoryView
    reason: str
    paused: bool
    last_change: LimitChange | None


class Limits(BaseModel):
    active_tasks: int = Field(description="tasks not yet completed, failed or canceled")
    max_active_tasks: int


class ProcessView(BaseModel):
    """The daemon's own resource use: numbers that only grow under a steady load are leaks."""

    rss_bytes: int
    open_fds: int | None
    threads: int
    asyncio_tasks: int | None


class ModelPrice(BaseModel):
    """A role's model and its price by litellm's table (null: the price is not known)."""

    model: str
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None


class NodeView(BaseModel):
    """One live node of the Ray cluster, as the per-node placement sees it."""

    node_id: str
    address: str
    cpus: float
    memory_total: int = Field(description="bytes")
    memory_available: int = Field(description="bytes, as the node itself read them")
    streams: int = Field(description="this daemon's streams working there now")
    room: int = Field(description="how many more streams it takes now")


class ExecutorsView(BaseModel):
    """Where code streams work (`[executors]`)."""

    backend: str = Field(description='"local" (this machine) or "ray" (a Ray cluster)')
    address: str | None = Field(default=None, description="the cluster (null: a local Ray)")
    driver: bool | None = Field(
        default=None, description="whether the Ray driver runs (it starts with a code stream)"
    )
    streams: int | None = Field(default=None, description="streams with a worker on the cluster")
    nodes: list[NodeView] | None = Field(
        default=None, description="the live nodes while the driver runs"
    )


class DaemonStatus(BaseModel):
    version: str
    pid: int
    uptime_s: float
    store: str = Field(description="the store's URL, without a password")
    tasks: dict[TaskState, int] = Field(description="how many tasks are in each state")
    concurrency: ConcurrencyView
    limits: Limits
    process: ProcessView
    models: dict[str, ModelPrice] | None = Field(
        default=None,
        description="each role's model and its price; null until the engine has loaded",
    )
    executors: ExecutorsView | None = None


# --- configuration -----------------------------------------------------------------------------


class ConfigDocument(BaseModel):
    """The effective configuration, and where each value came from."""

    config: dict[str, Any] = Field(description="nested tables, as in config.toml")
    sources: dict[str, str] = Field(description="dotted key -> default, global (file), project")


class ConfigEntry(BaseModel):
    """One key (or table) of the configuration, and where its value came from."""

    key: str
    value: Any
    source: str
