"""Service errors as A2A errors (the SDK's, which its dispatcher turns into JSON-RPC codes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from a2a.utils.errors import (
    A2AError,
    ContentTypeNotSupportedError,
    InternalError,
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from pydantic import ValidationError

from daemon.api.a2a.intents import NotActionable, TaskEnded, UnsupportedContent
from daemon.service.errors import InvalidParams, InvalidState, ServiceError, TaskNotFound

T = TypeVar("T")


def a2a_error(exc: Exception, *, canceling: bool = False) -> A2AError:
    """The A2A error for a service error, a refused message or refused params."""
    if isinstance(exc, TaskNotFound):
        return TaskNotFoundError(exc.message, {"task_id": (exc.data or {}).get("task_id")})
    if isinstance(exc, InvalidState) and canceling:
        return TaskNotCancelableError(exc.message)
    if isinstance(exc, InvalidParams | InvalidState):
        return InvalidParamsError(exc.message, {"tierd": exc.data} if exc.data else None)
    if isinstance(exc, TaskEnded):
        return UnsupportedOperationError(str(exc))
    if isinstance(exc, UnsupportedContent):
        return ContentTypeNotSupportedError(str(exc))
    if isinstance(exc, NotActionable):
        return InvalidParamsError(str(exc))
    if isinstance(exc, ValidationError):
        fields = [
            {"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()
        ]
        return InvalidParamsError("invalid tierd fields", {"fields": fields})
    if isinstance(exc, ServiceError):
        return InternalError(exc.message)
    raise exc


async def mapped(action: Callable[[], Awaitable[T]], *, canceling: bool = False) -> T:
    """Run `action`, raising its service errors as A2A errors."""
    try:
        return await action()
    except (ServiceError, NotActionable, ValidationError) as exc:
        raise a2a_error(exc, canceling=canceling) from exc
