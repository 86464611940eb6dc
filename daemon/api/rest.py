"""REST adapter under /v1 for scripts, plus Server-Sent Events for live progress.

Thin: each route validates with the shared params models, calls the service and answers with
its result model (which is also the route's documented response).
Events are read from the store, so `Last-Event-ID` resumes exactly where a client left off,
across reconnects and daemon restarts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError

from daemon.service.errors import Busy, InvalidParams
from daemon.service.params import (
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    STATES,
    ApproveParams,
    ConfigGetParams,
    ConfigSetParams,
    ListParams,
    SubmitParams,
    TaskIdParams,
)
from daemon.service.params import AnswerParams as _AnswerParams
from daemon.service.results import (
    Answered,
    Canceled,
    ConfigDocument,
    ConfigEntry,
    DaemonStatus,
    Decided,
    Submitted,
    TaskDetail,
    TaskPage,
)
from daemon.service.service import Service
from daemon.store.feed import EventFeed

router = APIRouter()
#: Task ids are short tokens; a longer path segment is a 422 naming task_id, not a lookup.
TaskId = Annotated[str, Path(min_length=1, max_length=64)]
log = logging.getLogger("tierd.rest")

#: The "busy" answer of a bounded queue, documented in the OpenAPI schema.
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Busy: a limit is reached; retry after the Retry-After header's "
        "seconds (JSON body: error.code -32005, error.data.retry_after_s)"
    }
}


def _service(request: Request) -> Service:
    return request.app.state.daemon.service


def _feed(request: Request) -> EventFeed:
    return request.app.state.daemon.feed


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: dict[str, str] = Field(min_length=1)


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=20000)


class Health(BaseModel):
    ok: bool


@router.get("/healthz", tags=["daemon"])
async def healthz() -> Health:
    return Health(ok=True)


@router.post("/v1/tasks", status_code=202, tags=["tasks"], responses=BUSY_RESPONSE)
async def submit_task(
    body: SubmitParams,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="the same as the body's idempotency_key (either one, or both equal)",
        ),
    ] = None,
) -> Submitted:
    if idempotency_key is not None:
        if body.idempotency_key not in (None, idempotency_key):
            raise InvalidParams(
                "idempotency_key: the Idempotency-Key header and the body's idempotency_key differ",
                {"field": "idempotency_key"},
            )
        body = body.model_copy(update={"idempotency_key": idempotency_key})
    return await _service(request).submit(body)


@router.get("/v1/tasks", tags=["tasks"])
async def list_tasks(
    request: Request,
    state: STATES | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> TaskPage:
    return await _service(request).list(ListParams(state=state, limit=limit, cursor=cursor))


@router.get("/v1/tasks/{task_id}", tags=["tasks"])
async def get_task(task_id: TaskId, request: Request) -> TaskDetail:
    return await _service(request).get(TaskIdParams(task_id=task_id))


@router.post("/v1/tasks/{task_id}/cancel", tags=["tasks"])
async def cancel_task(task_id: TaskId, request: Request) -> Canceled:
    return await _service(request).cancel(TaskIdParams(task_id=task_id))


@router.post("/v1/tasks/{task_id}/answer", tags=["tasks"])
async def answer_task(task_id: TaskId, body: AnswerBody, request: Request) -> Answered:
    return await _service(request).answer(_AnswerParams(task_id=task_id, answers=body.answers))


@router.post("/v1/tasks/{task_id}/approve", tags=["tasks"])
async def approve_task(task_id: TaskId, body: ApproveBody, request: Request) -> Decided:
    return await _service(request).approve(
        ApproveParams(task_id=task_id, decision=body.decision, comment=body.comment)
    )


@router.get("/v1/status", tags=["daemon"])
async def status(request: Request) -> DaemonStatus:
    return await _service(request).status()


@router.get("/v1/config", tags=["config"])
async def get_config(request: Request, key: str | None = None) -> ConfigDocument | ConfigEntry:
    return await _service(request).config_get(ConfigGetParams(key=key))


@router.put("/v1/config", tags=["config"])
async def put_config(body: ConfigSetParams, request: Request) -> ConfigEntry:
    return await _service(request).config_set(body)


def _start_id(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise InvalidParams(
                "Last-Event-ID: must be an event id (a non-negative integer)",
                {"field": "Last-Event-ID"},
            )
        return int(last_event_id)
    return after or 0


async def _sse(feed: EventFeed, start: int, task_id: str | None) -> AsyncIterator[dict[str, Any]]:
    async for ev in feed.follow(start, task_id):
        if ev is None:
            continue  # sse-starlette sends its own keep-alive pings
        yield {"id": str(ev["id"]), "event": ev["type"], "data": json.dumps(ev)}


#: Seconds a client refused an event stream is told to wait before trying again.
STREAM_RETRY_AFTER_S = 5.0
#: Seconds one send to a stream client may take: a client that stops reading is dropped
#: (and its slot freed) instead of holding buffers and a slot forever.
STREAM_SEND_TIMEOUT_S = 30.0


class _StreamResponse(EventSourceResponse):
    """An event stream that holds one of the feed's slots until it ends, however it ends
    (the client closes it, vanishes, stops reading, or the daemon stops)."""

    def __init__(self, content: AsyncIterator[dict[str, Any]], feed: EventFeed) -> None:
        super().__init__(content, ping=10, send_timeout=STREAM_SEND_TIMEOUT_S)
        self._feed = feed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            # A client that stopped reading: dropping it is the point, not an error.
            log.info("dropped an event stream whose client stopped reading")
        finally:
            self._feed.release_stream()


def _stream(request: Request, start: int, task_id: str | None) -> EventSourceResponse:
    """A new event stream, or Busy when every slot is taken (checked before any work)."""
    feed = _feed(request)
    limit = int(_service(request).config.get("limits.max_event_streams"))
    if not feed.acquire_stream(limit):
        raise Busy(
            f"too many open event streams ({limit}, limits.max_event_streams); "
            "close one or retry later",
            retry_after_s=STREAM_RETRY_AFTER_S,
            data={"limit": limit},
        )
    try:
        return _StreamResponse(_sse(feed, start, task_id), feed)
    except BaseException:
        feed.release_stream()
        raise


@router.get("/v1/events", tags=["events"], responses=BUSY_RESPONSE)
async def all_events(
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> EventSourceResponse:
    start = _start_id(last_event_id, after)
    return _stream(request, start, None)


@router.get("/v1/tasks/{task_id}/events", tags=["events"], responses=BUSY_RESPONSE)
async def task_events(
    task_id: TaskId,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> EventSourceResponse:
    await _service(request).get(TaskIdParams(task_id=task_id))  # 404 for an unknown task
    start = _start_id(last_event_id, after)
    return _stream(request, start, task_id)
