"""Errors the service raises, each with its JSON-RPC code and HTTP status.

Adapters translate them; the codes are documented in the README and in `rpc/discover`.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 reserved codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# tierd's own codes, from the -32000 range the spec leaves to servers.
TASK_NOT_FOUND = -32001
INVALID_STATE = -32002
NOT_CONFIGURED = -32003
UNAUTHORIZED = -32004
BUSY = -32005


class ServiceError(Exception):
    code = INTERNAL_ERROR
    http_status = 500

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class InvalidParams(ServiceError):
    code = INVALID_PARAMS
    http_status = 422


class TaskNotFound(ServiceError):
    code = TASK_NOT_FOUND
    http_status = 404


class InvalidState(ServiceError):
    """The task exists but is in a state where this action makes no sense."""

    code = INVALID_STATE
    http_status = 409


class NotConfigured(ServiceError):
    """No model or API key for a role: says which config key or variable to set."""

    code = NOT_CONFIGURED
    http_status = 422


class Busy(ServiceError):
    """A bounded queue is full: the client should retry after `retry_after_s` seconds.

    Refusing early keeps memory bounded and the daemon responsive for other clients; REST
    answers 429 with a Retry-After header, JSON-RPC this code with `data.retry_after_s`.
    """

    code = BUSY
    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0, data: Any = None) -> None:
        super().__init__(message, {"retry_after_s": retry_after_s, **(data or {})})
        self.retry_after_s = retry_after_s


ERROR_CODES: dict[int, str] = {
    PARSE_ERROR: "Parse error: the body is not valid JSON",
    INVALID_REQUEST: "Invalid Request: not a JSON-RPC 2.0 request object",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params: data names the field",
    INTERNAL_ERROR: "Internal error",
    TASK_NOT_FOUND: "Task not found",
    INVALID_STATE: "The task's state does not allow this (e.g. cancel a completed task)",
    NOT_CONFIGURED: "A role has no usable model or API key; data names what to set",
    BUSY: "Busy: a bounded queue is full; retry after data.retry_after_s seconds",
}
