"""Service errors as MCP tool errors: the message a model reads, with what to do next.

A tool failure the caller can act on (an unknown task, a state that does not allow the
action, a wrong field) is a tool result with `isError` set, not a protocol error: MCP clients
show it to the model, which can then correct itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from daemon.service.errors import ServiceError

T = TypeVar("T")


def tool_error(exc: ServiceError) -> ToolError:
    """`exc` as a ToolError whose text carries the code, the message and the remedy."""
    detail = f" ({exc.data})" if exc.data else ""
    return ToolError(f"error {exc.code}: {exc.message}{detail}. {exc.remedy}.")


def invalid_arguments(exc: ValidationError) -> ToolError:
    """Arguments that the service's params model refused, field by field."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
    ]
    return ToolError("invalid arguments: " + "; ".join(parts))


async def calling(action: Callable[[], Awaitable[T]]) -> T:
    """Run a service call, turning its errors into tool errors."""
    try:
        return await action()
    except ServiceError as exc:
        raise tool_error(exc) from exc
