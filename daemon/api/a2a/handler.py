"""The A2A request handler over tierd's service: each A2A method is a service call.

The SDK's default handler runs an agent executor and keeps tasks in a task store of its own;
tierd has both already (the engine and the store), so this handler answers each method from
the service instead, and the A2A task is the tierd task. Updates stream from the store's
event feed: a status update when the task's state (or what it waits for) changes, an
artifact update when the result arrives. A stream ends when the task ends or waits for the
human; `SubscribeToTask` picks it up again, across daemon restarts too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC
from typing import Any, cast

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskStatusUpdateEvent,
)
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE, MAX_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from daemon.api.a2a import intents
from daemon.api.a2a.errors import a2a_error, mapped
from daemon.api.a2a.mapping import (
    FINAL,
    INTERRUPTED,
    STATES,
    TIERD_STATES,
    artifacts_of,
    status_of,
    summary_task,
    task_of,
)
from daemon.service.errors import InvalidParams, ServiceError
from daemon.service.params import TaskIdParams
from daemon.service.results import TaskDetail, TaskDiff, TaskSummary
from daemon.service.service import Service
from daemon.store.feed import EventFeed

#: The longest id the service takes: a longer one names no task.
TASK_ID_MAX = 64
#: Seconds between re-reads of a followed task when its events are quiet (a safety net).
QUIET_RECHECK_S = 5.0


def _fingerprint(task: TaskDetail) -> tuple[Any, ...]:
    """What a waiting task waits for: a change of it is news, even in the same state."""
    return (task.state, tuple(q.id for q in task.questions if q.answer is None), task.result)


def _stops(task: TaskDetail, acted_on: tuple[Any, ...] | None) -> bool:
    """Whether following ends here: the task ended, or it waits for the human for something
    other than what the message that started the following answered."""
    state = STATES[task.state]
    if state in FINAL:
        return True
    return state in INTERRUPTED and _fingerprint(task) != acted_on


class TierdRequestHandler(RequestHandler):
    """A2A methods answered by tierd's service; the A2A task is the tierd task."""

    def __init__(self, service: Service, feed: EventFeed) -> None:
        self._service = service
        self._feed = feed

    # --- reading -------------------------------------------------------------------------

    async def _detail(self, task_id: str) -> TaskDetail:
        """The task with exactly this id. The service also takes a unique prefix (and @last),
        for people at a terminal; an A2A id is opaque, so only the whole id names a task."""
        if len(task_id) <= TASK_ID_MAX:
            try:
                task = await self._service.get(TaskIdParams(task_id=task_id))
            except InvalidParams as exc:
                if "candidates" not in (exc.data or {}):  # not an ambiguous prefix
                    raise a2a_error(exc) from exc
            except ServiceError as exc:
                raise a2a_error(exc) from exc
            else:
                if task.id == task_id:
                    return task
        raise TaskNotFoundError(f"task not found: {task_id}", {"task_id": task_id})

    async def _find(self, task_id: str) -> TaskDetail | None:
        try:
            return await self._detail(task_id)
        except TaskNotFoundError:
            return None

    async def _diff(self, task: TaskDetail) -> TaskDiff | None:
        if task.code is None or task.state not in ("awaiting_approval", "completed"):
            return None
        try:
            return await self._service.diff(TaskIdParams(task_id=task.id))
        except ServiceError:
            return None  # not merged (yet), or its branch is gone: the result still stands

    async def _task(self, task: TaskDetail, history_length: int | None = None) -> Task:
        return task_of(task, await self._diff(task), history_length)

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        length = params.history_length if params.HasField("history_length") else None
        return await self._task(await self._detail(params.id), length)

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        size = min(params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE, MAX_LIST_TASKS_PAGE_SIZE)
        states = TIERD_STATES.get(params.status) if params.status else None
        length = params.history_length if params.HasField("history_length") else None
        found: Sequence[TaskSummary]
        cursor = None
        if params.context_id:
            # A context holds one task, whose id it is.
            one = await self._find(params.context_id)
            found = [one] if one is not None and (not states or one.state in states) else []
            total = len(found)
        else:
            # A2A 1.0 lists by last update, newest first, and can keep only the tasks whose
            # status changed at or after a time (status_timestamp_after).
            since = (
                params.status_timestamp_after.ToDatetime(tzinfo=UTC).timestamp()
                if params.HasField("status_timestamp_after")
                else None
            )
            token = params.page_token or None
            found, cursor = await mapped(lambda: self._service.changed(states, size, token, since))
            # A2A's total_size: the tasks the filter matches before pagination.
            total = await self._service.count_changed(states, since)
        tasks = []
        for summary in found:
            if params.include_artifacts:
                tasks.append(await self._task(await self._detail(summary.id), length))
            else:
                tasks.append(summary_task(summary, length))
        return ListTasksResponse(
            tasks=tasks, next_page_token=cursor or "", page_size=size, total_size=total
        )

    # --- acting ----------------------------------------------------------------------------

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        task_id = (await self._detail(params.id)).id  # the whole id, never a prefix
        await mapped(lambda: self._service.cancel(TaskIdParams(task_id=task_id)), canceling=True)
        return await self._task(await self._detail(task_id))

    async def _target(self, message: Message) -> TaskDetail | None:
        """The task a message continues; None: it starts one. The context id of a tierd task
        is its task id, kept in the store with it, so this holds across restarts."""
        if message.task_id:
            task = await self._detail(message.task_id)
            if message.context_id and message.context_id != task.id:
                raise InvalidParamsError(
                    f"contextId {message.context_id} is not task {task.id}'s context "
                    f"(its contextId is {task.id})"
                )
            return task
        if message.context_id:
            # A context id alone continues the task it names (while it waits for the human).
            # One tierd did not give out is refused: the spec forbids answering it under a
            # new context id, and tierd keeps no context ids of clients.
            named = await self._find(message.context_id)
            if named is None:
                raise InvalidParamsError(
                    f"contextId {message.context_id} is not a tierd context: a context id is "
                    "the id of a tierd task, as a response gave it. Send the message without "
                    "contextId to start a task"
                )
            return named
        return None

    async def _act(self, request: SendMessageRequest) -> tuple[TaskDetail, tuple[Any, ...] | None]:
        """Start or continue a task; the task after it, and what the message answered."""
        message: Message = request.message
        await mapped(lambda: _check_parts(message))
        before = await self._target(message)
        if before is not None:
            waiting = before
            intent = await mapped(lambda: _follow_up(message, waiting))
            if isinstance(intent, intents.Answer):
                await mapped(lambda: self._service.answer(intent.params))
            else:
                await mapped(lambda: self._service.approve(intent.params))
            return await self._detail(before.id), _fingerprint(before)
        references = [await self._detail(ref) for ref in dict.fromkeys(message.reference_task_ids)]
        submit = await mapped(lambda: _new_task(request, references))
        submitted = await mapped(lambda: self._service.submit(submit.params))
        return await self._detail(submitted.task_id), None

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        after = self._feed.latest
        task, acted_on = await self._act(params)
        if not params.configuration.return_immediately and not _stops(task, acted_on):
            # Blocking, but bounded: a tierd task takes minutes, and no call should hold
            # a connection that long. The client polls GetTask or subscribes for the rest.
            bound = float(self._service.config.get("a2a.send_wait_s"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    async for now in self._snapshots(task.id, after):
                        task = now
                        if _stops(task, acted_on):
                            break
        return await self._task(task, _history_length(params))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        after = self._feed.latest
        task, acted_on = await self._act(params)
        async for event in self._follow(task, after, acted_on, _history_length(params)):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        after = self._feed.latest
        task = await self._detail(params.id)
        if STATES[task.state] in FINAL:
            raise UnsupportedOperationError(
                f"task {task.id} is {task.state}: there is nothing to subscribe to"
            )
        async for event in self._follow(task, after, _fingerprint(task)):
            yield event

    # --- following -------------------------------------------------------------------------

    async def _snapshots(self, task_id: str, after: int) -> AsyncGenerator[TaskDetail, None]:
        """The task, read again after each of its events (and now and then when quiet)."""
        events = cast(
            "AsyncGenerator[dict[str, Any] | None, None]",
            self._feed.follow(after, task_id, heartbeat_s=QUIET_RECHECK_S),
        )
        try:
            async for _event in events:
                yield await self._detail(task_id)
        finally:
            await events.aclose()  # the feed counts its followers until the generator ends

    async def _follow(
        self,
        task: TaskDetail,
        after: int,
        acted_on: tuple[Any, ...] | None,
        history_length: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The task, then its status and artifact updates until it ends or waits again."""
        yield await self._task(task, history_length)
        if _stops(task, acted_on):
            return
        seen = _fingerprint(task)
        async for now in self._snapshots(task.id, after):
            if now.result is not None and now.result != task.result:
                for artifact in artifacts_of(now, await self._diff(now)):
                    yield TaskArtifactUpdateEvent(
                        task_id=now.id, context_id=now.id, artifact=artifact, last_chunk=True
                    )
            if _fingerprint(now) != seen:
                yield TaskStatusUpdateEvent(
                    task_id=now.id, context_id=now.id, status=status_of(now)
                )
            task, seen = now, _fingerprint(now)
            if _stops(now, acted_on):
                return

    # --- not offered -----------------------------------------------------------------------

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError


def _history_length(request: SendMessageRequest) -> int | None:
    """How much history the client wants with the task (None: all of it)."""
    config = request.configuration
    return config.history_length if config.HasField("history_length") else None


async def _follow_up(message: Message, task: TaskDetail) -> intents.Answer | intents.Decide:
    return intents.follow_up(message, task)


async def _new_task(request: SendMessageRequest, references: list[TaskDetail]) -> intents.Submit:
    return intents.new_task(request, references)


async def _check_parts(message: Message) -> None:
    intents.check_parts(message)
