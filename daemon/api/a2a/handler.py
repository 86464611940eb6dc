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
from collections.abc import AsyncGenerator
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
    PushNotificationNotSupportedError,
    UnsupportedOperationError,
)

from daemon.api.a2a import intents
from daemon.api.a2a.errors import mapped
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
from daemon.service.errors import ServiceError
from daemon.service.params import ListParams, TaskIdParams
from daemon.service.results import TaskDetail, TaskDiff
from daemon.service.service import Service
from daemon.store.feed import EventFeed

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
        return await mapped(lambda: self._service.get(TaskIdParams(task_id=task_id)))

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
        query: dict[str, Any] = {"limit": size, "cursor": params.page_token or None}
        if states:
            query["state"] = states
        page = await mapped(lambda: self._service.list(ListParams.model_validate(query)))
        length = params.history_length if params.HasField("history_length") else None
        tasks = []
        for summary in page.tasks:
            if params.include_artifacts:
                tasks.append(await self._task(await self._detail(summary.id), length))
            else:
                tasks.append(summary_task(summary, length))
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=page.next_cursor or "",
            page_size=size,
            total_size=len(tasks),
        )

    # --- acting ----------------------------------------------------------------------------

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        await mapped(lambda: self._service.cancel(TaskIdParams(task_id=params.id)), canceling=True)
        return await self._task(await self._detail(params.id))

    async def _act(self, request: SendMessageRequest) -> tuple[TaskDetail, tuple[Any, ...] | None]:
        """Start or continue a task; the task after it, and what the message answered."""
        message: Message = request.message
        before: TaskDetail | None = None
        if message.task_id:
            before = await self._detail(message.task_id)
        elif message.context_id:
            # A context id is a task id here: it continues that task while it waits for the
            # human; otherwise (an ended task, an id of the client's own) a new task starts.
            with contextlib.suppress(ServiceError):
                found = await self._service.get(TaskIdParams(task_id=message.context_id))
                before = found if STATES[found.state] in INTERRUPTED else None
        if before is not None:
            waiting = before
            intent = await mapped(lambda: _follow_up(message, waiting))
            if isinstance(intent, intents.Answer):
                await mapped(lambda: self._service.answer(intent.params))
            else:
                await mapped(lambda: self._service.approve(intent.params))
            return await self._detail(before.id), _fingerprint(before)
        submit = await mapped(lambda: _new_task(request))
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
        return await self._task(task)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        after = self._feed.latest
        task, acted_on = await self._act(params)
        async for event in self._follow(task, after, acted_on):
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
        self, task: TaskDetail, after: int, acted_on: tuple[Any, ...] | None
    ) -> AsyncGenerator[Event, None]:
        """The task, then its status and artifact updates until it ends or waits again."""
        yield await self._task(task)
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


async def _follow_up(message: Message, task: TaskDetail) -> intents.Answer | intents.Decide:
    return intents.follow_up(message, task)


async def _new_task(request: SendMessageRequest) -> intents.Submit:
    return intents.new_task(request)
