"""Live progress as Server-Sent Events: GET /v1/events and /v1/tasks/{id}/events.

Events are read from the store, so a client that comes back with `Last-Event-ID` (or
`?after=`) resumes exactly where it left off, across reconnects and daemon restarts. Each open
stream holds one of the feed's slots (`limits.max_event_streams`) until it ends, however it
ends: the client closes it, vanishes, stops reading (dropped after
`server.stream_send_timeout_s`, here and by the connection itself), or the daemon stops.

A task's stream follows the task live; for a task that has already ended (or with
`?follow=false`) it replays the stored events and closes, so `curl -N` of a finished task
ends. The task is named as everywhere: its id, a unique prefix, or `@last`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError

from daemon.api.single_query import single_valued_query
from daemon.service.errors import Busy, InvalidParams
from daemon.service.params import MAX_EVENT_ID, TASK_ID_DOC
from daemon.service.service import Service
from daemon.service.task_views import find_task
from daemon.store.feed import EventFeed
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import TASK_DELETED, Store

router = APIRouter(dependencies=[Depends(single_valued_query)])
log = logging.getLogger("tierd.events")

TaskId = Annotated[str, Path(min_length=1, max_length=64, description=TASK_ID_DOC)]
#: Seconds a client refused an event stream is told to wait before trying again.
STREAM_RETRY_AFTER_S = 5.0
#: The shipped server.stream_send_timeout_s: how long a stream waits on a client that stopped
#: reading before it drops the client and frees the slot.
STREAM_SEND_TIMEOUT_S = 30.0
#: An event id as a header carries it: ASCII digits only. `str.isdigit` is not enough: it
#: takes "²" and other Unicode digits, which `int` then refuses or reads as another number.
_EVENT_ID = re.compile(r"[0-9]{1,19}")
_AFTER_DOC = f"resume after this event id (0 to {MAX_EVENT_ID}); Last-Event-ID wins if both"

BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Busy: every event stream slot is taken; retry after the Retry-After "
        "header's seconds (JSON body: error.code -32005, error.data.retry_after_s)"
    }
}


def start_id(last_event_id: str | None, after: int | None) -> int:
    """Where a stream starts: after `Last-Event-ID` if sent, else after `after`, else 0."""
    if last_event_id is None:
        return after or 0
    text = last_event_id.strip(" \t")
    if _EVENT_ID.fullmatch(text) is None or int(text) > MAX_EVENT_ID:
        raise InvalidParams(
            f"Last-Event-ID: must be an event id, an integer from 0 to {MAX_EVENT_ID} "
            "in ASCII digits",
            {"field": "Last-Event-ID", "min": 0, "max": MAX_EVENT_ID},
        )
    return int(text)


def _service(request: Request) -> Service:
    return request.app.state.daemon.service


def _message(ev: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(ev["id"]), "event": ev["type"], "data": json.dumps(ev)}


async def _sse(feed: EventFeed, start: int, task_id: str | None) -> AsyncIterator[dict[str, Any]]:
    async for ev in feed.follow(start, task_id):
        if ev is None:
            continue  # sse-starlette sends its own keep-alive pings
        yield _message(ev)
        if task_id is not None and ev["type"] == TASK_DELETED:
            return  # the task is gone: nothing more will come for it


async def _replay(store: Store, start: int, task_id: str) -> AsyncIterator[dict[str, Any]]:
    """The task's stored events after `start`, page by page; then the stream ends."""
    last = start
    while batch := await store.events_after(last, task_id):
        for ev in batch:
            last = ev["id"]
            yield _message(ev)


class _StreamResponse(EventSourceResponse):
    """An event stream that holds one of the feed's slots until it ends, however it ends
    (the client closes it, vanishes, stops reading, or the daemon stops)."""

    def __init__(
        self, content: AsyncIterator[dict[str, Any]], feed: EventFeed, send_timeout_s: float
    ) -> None:
        # A client that stops reading is dropped after `send_timeout_s` (its slot freed)
        # instead of holding buffers and a slot forever.
        super().__init__(content, ping=10, send_timeout=send_timeout_s)
        self._feed = feed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            # A client that stopped reading: dropping it is the point, not an error.
            log.info("dropped an event stream whose client stopped reading")
        finally:
            self._feed.release_stream()


def _stream(
    request: Request, start: int, task_id: str | None, *, replay_only: bool = False
) -> EventSourceResponse:
    """A new event stream, or Busy when every slot is taken (checked before any work); with
    `replay_only`, the task's stored events and then the end of the stream."""
    feed: EventFeed = request.app.state.daemon.feed
    limit = int(_service(request).config.get("limits.max_event_streams"))
    if not feed.acquire_stream(limit):
        raise Busy(
            f"too many open event streams ({limit}, limits.max_event_streams); "
            "close one or retry later",
            retry_after_s=STREAM_RETRY_AFTER_S,
            data={"limit": limit},
        )
    try:
        send_timeout_s = request.app.state.stream_send_timeout_s
        if replay_only and task_id is not None:
            content = _replay(request.app.state.daemon.store, start, task_id)
        else:
            content = _sse(feed, start, task_id)
        return _StreamResponse(content, feed, send_timeout_s)
    except BaseException:
        feed.release_stream()
        raise


LastEventId = Annotated[
    str | None, Header(description=f"resume after this event id (0 to {MAX_EVENT_ID})")
]
After = Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID, description=_AFTER_DOC)]


@router.get("/v1/events", tags=["events"], responses=BUSY_RESPONSE)
async def all_events(
    request: Request, last_event_id: LastEventId = None, after: After = None
) -> EventSourceResponse:
    return _stream(request, start_id(last_event_id, after), None)


Follow = Annotated[
    bool,
    Query(
        description="false: replay the stored events and close, even for a live task (a task "
        "that has ended is always replayed and closed)"
    ),
]


@router.get("/v1/tasks/{task_id}/events", tags=["events"], responses=BUSY_RESPONSE)
async def task_events(
    task_id: TaskId,
    request: Request,
    last_event_id: LastEventId = None,
    after: After = None,
    follow: Follow = True,
) -> EventSourceResponse:
    row = await find_task(_service(request).store, task_id)  # 404 for an unknown task
    ended = TaskState(row.state) in TERMINAL
    return _stream(request, start_id(last_event_id, after), row.id, replay_only=ended or not follow)
