"""The MCP tools: submit, follow, answer, approve and cancel tierd tasks.

Each tool is a thin call into the service with the service's own params model, so MCP
accepts exactly what JSON-RPC and REST accept. The descriptions are written for a model: what
the tool does, when to call it, and what comes next. No tool holds a call longer than
`mcp.tool_wait_s`; `submit_task` answers at once and `wait_task` follows the task in bounded
steps (`following`), asking the user through elicitation when the task needs them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from daemon.api.mcp.errors import calling, invalid_arguments
from daemon.api.mcp.following import follow
from daemon.api.mcp.outcome import SubmitAnswer, submitted
from daemon.api.mcp.progress import (
    Deadline,
    Progress,
    describe,
    fraction_done,
    left_approval,
    wait_until_settled,
)
from daemon.service.params import (
    BASE_DOC,
    INCLUDE_UNCOMMITTED_DOC,
    REPO_DOC,
    STATES,
    AnswerParams,
    ApproveParams,
    ListParams,
    SubmitParams,
    TaskIdParams,
    TaskOptions,
)
from daemon.service.results import Answered, Canceled, Decided, TaskDetail, TaskDiff, TaskPage
from daemon.service.service import Service
from daemon.store.feed import EventFeed

#: The service's own words for a task id (an id, a unique prefix, or the latest task).
TaskId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description=TaskIdParams.model_fields["task_id"].description or "the task's id",
    ),
]

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def wait_bound(service: Service) -> float:
    """Seconds a tool may hold a call (`mcp.tool_wait_s`), read per call: config/set applies."""
    return float(service.config.get("mcp.tool_wait_s"))


def _params(model: type[BaseModel], **values: object) -> BaseModel:
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise invalid_arguments(exc) from exc


def register_tools(server: MCPServer, service: Service, feed: EventFeed) -> None:
    """Add tierd's tools to `server`."""
    _register_submit(server, service)
    _register_wait(server, service, feed)
    _register_reads(server, service)
    _register_answer(server, service)
    _register_decisions(server, service, feed)


def _register_submit(server: MCPServer, service: Service) -> None:
    @server.tool(
        name="submit_task",
        title="Submit a task to tierd",
        description=(
            "Hand a piece of work to tierd, which plans it into parallel streams run by a team "
            "of agents, reviews each output and merges one result. Answers at once with the "
            "task id; the work takes minutes. Then call wait_task with the id (repeatedly) to "
            "follow it; it tells you when the task needs answers or approval. For a code task "
            "pass repo (an absolute path of a git work tree): tierd works in worktrees of its "
            "own and never touches the user's working tree."
        ),
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def submit_task(
        goal: Annotated[str, Field(min_length=1, description="what the task should achieve")],
        context: Annotated[
            str, Field(description="background the planner should know: constraints, files")
        ] = "",
        repo: Annotated[str | None, Field(description=REPO_DOC)] = None,
        base: Annotated[str | None, Field(description=BASE_DOC)] = None,
        include_uncommitted: Annotated[bool, Field(description=INCLUDE_UNCOMMITTED_DOC)] = False,
        options: Annotated[
            TaskOptions | None,
            Field(description='per-task settings, e.g. {"approval": "required"}'),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Field(description="any unique string (e.g. a UUID) to make a retried submit safe"),
        ] = None,
    ) -> SubmitAnswer:
        params = _params(
            SubmitParams,
            goal=goal,
            context=context,
            repo=repo,
            base=base,
            include_uncommitted=include_uncommitted,
            options=options.model_dump(exclude_none=True) if options else None,
            idempotency_key=idempotency_key,
        )
        assert isinstance(params, SubmitParams)
        answer = await calling(lambda: service.submit(params))
        return submitted(answer.task_id, answer.state, answer.duplicate)


def _register_wait(server: MCPServer, service: Service, feed: EventFeed) -> None:
    @server.tool(
        name="wait_task",
        title="Wait for a tierd task",
        description=(
            "Wait until the task ends or needs the human, but at most a bounded time (about "
            "30 seconds, or timeout_s if shorter); returns where it stands either way: its "
            "state, each stream's state, open questions, dollars spent so far, the result "
            "once there is one, and next_step saying what to do. If settled is false, call "
            "wait_task again. When the task needs the user and your client supports "
            "elicitation, tierd asks them itself and records their answer (human_reply)."
        ),
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def wait_task(
        task_id: TaskId,
        ctx: Context,
        timeout_s: Annotated[
            float | None, Field(ge=0, description="wait at most this long (seconds)")
        ] = None,
    ) -> Progress | InputRequiredResult:
        bound = wait_bound(service)
        if timeout_s is not None:
            bound = min(bound, timeout_s)

        async def notify(progress: Progress) -> None:
            done, total = fraction_done(progress)
            await ctx.report_progress(done, total, describe(progress))

        deadline = Deadline(bound)
        return await calling(lambda: follow(service, feed, ctx, task_id, deadline, notify))


def _register_reads(server: MCPServer, service: Service) -> None:
    @server.tool(
        name="get_task",
        title="Read a tierd task",
        description=(
            "Everything about one task: its plan, each stream's output and review verdict, "
            "questions and answers, the merged result and the report (tokens, dollars, time)."
        ),
        annotations=READ_ONLY,
    )
    async def get_task(task_id: TaskId) -> TaskDetail:
        return await calling(lambda: service.get(TaskIdParams(task_id=task_id)))

    @server.tool(
        name="get_diff",
        title="Show a tierd code task's change",
        description=(
            "A code task's merged result against its base: the files with lines added and "
            "removed, and the unified diff. Available once the result is merged (awaiting "
            "approval or completed)."
        ),
        annotations=READ_ONLY,
    )
    async def get_diff(task_id: TaskId) -> TaskDiff:
        return await calling(lambda: service.diff(TaskIdParams(task_id=task_id)))

    @server.tool(
        name="list_tasks",
        title="List tierd tasks",
        description="Tasks, newest first, optionally in one state; page with next_cursor.",
        annotations=READ_ONLY,
    )
    async def list_tasks(
        state: Annotated[STATES | None, Field(description="only tasks in this state")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page")] = None,
    ) -> TaskPage:
        params = ListParams(state=state, limit=limit, cursor=cursor)
        return await calling(lambda: service.list(params))


def _register_answer(server: MCPServer, service: Service) -> None:
    @server.tool(
        name="answer_questions",
        title="Answer a tierd task's questions",
        description=(
            "Answer open questions of a task in state input_required (wait_task lists them "
            "with their ids). The streams that asked resume at once; others keep waiting. "
            "Ask the user when you do not know the answer."
        ),
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def answer_questions(
        task_id: TaskId,
        answers: Annotated[
            dict[str, str], Field(min_length=1, description="question id -> answer text")
        ],
    ) -> Answered:
        params = _params(AnswerParams, task_id=task_id, answers=answers)
        assert isinstance(params, AnswerParams)
        return await calling(lambda: service.answer(params))


def _register_decisions(server: MCPServer, service: Service, feed: EventFeed) -> None:
    @server.tool(
        name="approve_result",
        title="Approve or reject a tierd result",
        description=(
            "Decide on a merged result in state awaiting_approval: approve completes the "
            "task; reject sends it back for a revision with your comment (say what to "
            "change). Show the result to the user first when they asked for approval. For a "
            "code task, get_diff shows the change, and apply says what approval does with it."
        ),
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
    )
    async def approve_result(
        task_id: TaskId,
        decision: Literal["approve", "reject"],
        comment: Annotated[
            str | None, Field(max_length=20000, description="with reject: what to change")
        ] = None,
        apply: Annotated[
            Literal["branch", "merge", "patch"] | None,
            Field(description=ApproveParams.model_fields["apply"].description),
        ] = None,
    ) -> Decided:
        params = _params(
            ApproveParams, task_id=task_id, decision=decision, comment=comment, apply=apply
        )
        assert isinstance(params, ApproveParams)
        deadline = Deadline(wait_bound(service))
        decided = await calling(lambda: service.approve(params))
        # An approval completes the task in the engine a moment later; waiting for that here
        # (for what is left of the bound) means the next wait_task sees the outcome, not the
        # decision pending.
        await calling(
            lambda: wait_until_settled(
                service, feed, decided.task_id, deadline.remaining(), until=left_approval
            )
        )
        return decided

    @server.tool(
        name="cancel_task",
        title="Cancel a tierd task",
        description="Cancel a task that has not ended; its running agents stop at once.",
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False),
    )
    async def cancel_task(task_id: TaskId) -> Canceled:
        return await calling(lambda: service.cancel(TaskIdParams(task_id=task_id)))
