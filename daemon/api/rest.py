"""REST adapter under /v1 for scripts (the live event streams are in `events`).

Thin: each route validates with the shared params models, calls the service and answers with
its result model (which is also the route's documented response).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from daemon.api.single_query import single_valued_query
from daemon.service.deletion import Deleted
from daemon.service.errors import InvalidParams
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
    TaskDiff,
    TaskPage,
)
from daemon.service.service import Service

router = APIRouter(dependencies=[Depends(single_valued_query)])
#: Task ids are short tokens; a longer path segment is a 422 naming task_id, not a lookup.
TaskId = Annotated[str, Path(min_length=1, max_length=64)]

#: The "busy" answer of a bounded queue, documented in the OpenAPI schema.
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Busy: a limit is reached; retry after the Retry-After header's "
        "seconds (JSON body: error.code -32005, error.data.retry_after_s)"
    }
}


def _service(request: Request) -> Service:
    return request.app.state.daemon.service


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: dict[str, str] = Field(min_length=1)


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=20000)
    apply: Literal["branch", "merge", "patch"] | None = None


class Health(BaseModel):
    ok: bool
    #: This daemon's start: a client checks it against daemon.json before sending the token.
    instance_id: str | None = None


@router.get("/healthz", tags=["daemon"])
async def healthz(request: Request) -> Health:
    return Health(ok=True, instance_id=getattr(request.app.state, "instance_id", None))


#: The submit's second form, described beside the JSON body FastAPI documents: the same
#: params, the files as parts (`json_body` turns the form into the JSON body).
SUBMIT_FORM: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["task"],
                    "properties": {
                        "task": {
                            "type": "string",
                            "description": "the submit's params as JSON (the application/json "
                            "body), without attachments",
                        },
                        "attachments": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the files: each part's filename is the "
                            "attachment's name, its Content-Type the media type (told by the "
                            "content when absent or application/octet-stream)",
                        },
                    },
                }
            }
        }
    }
}


@router.post(
    "/v1/tasks",
    status_code=202,
    tags=["tasks"],
    responses=BUSY_RESPONSE,
    openapi_extra=SUBMIT_FORM,
)
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
    """Submit a task; returns its id at once. The body is the submit's params as JSON, or a
    multipart form: a `task` field holding that JSON and the files as `attachments` parts."""
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
    state: Annotated[
        list[STATES] | None,
        Query(max_length=10, description="repeat for any of several states"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> TaskPage:
    return await _service(request).list(ListParams(state=state, limit=limit, cursor=cursor))


@router.get("/v1/tasks/{task_id}", tags=["tasks"])
async def get_task(task_id: TaskId, request: Request) -> TaskDetail:
    return await _service(request).get(TaskIdParams(task_id=task_id))


@router.delete("/v1/tasks/{task_id}", tags=["tasks"])
async def delete_task(task_id: TaskId, request: Request) -> Deleted:
    """Delete an ended task and all tierd keeps of it (409 while it is live: cancel it
    first); the answer says what was removed and what stays yours."""
    return await _service(request).delete(TaskIdParams(task_id=task_id))


@router.post("/v1/tasks/{task_id}/cancel", tags=["tasks"])
async def cancel_task(task_id: TaskId, request: Request) -> Canceled:
    return await _service(request).cancel(TaskIdParams(task_id=task_id))


@router.post("/v1/tasks/{task_id}/answer", tags=["tasks"])
async def answer_task(task_id: TaskId, body: AnswerBody, request: Request) -> Answered:
    return await _service(request).answer(_AnswerParams(task_id=task_id, answers=body.answers))


@router.post("/v1/tasks/{task_id}/approve", tags=["tasks"])
async def approve_task(task_id: TaskId, body: ApproveBody, request: Request) -> Decided:
    return await _service(request).approve(
        ApproveParams(
            task_id=task_id, decision=body.decision, comment=body.comment, apply=body.apply
        )
    )


@router.get(
    "/v1/tasks/{task_id}/diff",
    tags=["tasks"],
    response_model=TaskDiff,
    responses={200: {"content": {"text/x-diff": {"schema": {"type": "string"}}}}},
)
async def task_diff(task_id: TaskId, request: Request) -> Response:
    """A code task's merged change: the patch (text/x-diff), or with `Accept:
    application/json` the file list with +/- and the patch."""
    diff = await _service(request).diff(TaskIdParams(task_id=task_id))
    if "application/json" in request.headers.get("accept", ""):
        return Response(diff.model_dump_json(), media_type="application/json")
    return Response(diff.patch, media_type="text/x-diff; charset=utf-8")


@router.get("/v1/status", tags=["daemon"])
async def status(request: Request) -> DaemonStatus:
    return await _service(request).status()


@router.get("/v1/config", tags=["config"])
async def get_config(request: Request, key: str | None = None) -> ConfigDocument | ConfigEntry:
    return await _service(request).config_get(ConfigGetParams(key=key))


@router.put("/v1/config", tags=["config"])
async def put_config(body: ConfigSetParams, request: Request) -> ConfigEntry:
    return await _service(request).config_set(body)
