"""Errors the service raises: what went wrong, its JSON-RPC code and HTTP status, what to do.

The tree, with what a client should do about each one::

    ServiceError        -32603  500  the daemon failed on its side: report it, with the request
    ├── InvalidParams   -32602  422  fix the field `data` names and send again
    ├── NotConfigured   -32003  422  set the config key or environment variable `data` names
    ├── TaskNotFound    -32001  404  check the task id (task/list shows the tasks)
    ├── InvalidState    -32002  409  read the task (task/get) and act on the state it is in
    ├── Busy            -32005  429  send again after `data.retry_after_s` seconds
    └── StorageFull     -32006  507  free disk space where `data.where` says; nothing was written

The adapters translate them; the codes only the adapters raise (a body that is not JSON, not a
JSON-RPC request, an unknown method) are below with them, in `ERROR_CODES`, which `rpc/discover`
publishes and the README documents.
"""

from __future__ import annotations

from typing import Any, ClassVar

from daemon.store.errors import StoreFull

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
#: Sent only by the API's guard, in the body of its 401 for a missing or wrong token: the
#: request is refused before any adapter reads it, so no service call raises it.
UNAUTHORIZED = -32004
BUSY = -32005
STORAGE_FULL = -32006


class ServiceError(Exception):
    """Base of every error the service raises; itself, the daemon failed on its side."""

    code: ClassVar[int] = INTERNAL_ERROR
    http_status: ClassVar[int] = 500
    #: What the client should do, for the documentation of the code (`rpc/discover`).
    remedy: ClassVar[str] = "Internal error: the daemon failed on its side; report it"

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class InvalidParams(ServiceError):
    """A parameter is wrong; `data` names the field (and the config key, if one is at fault)."""

    code = INVALID_PARAMS
    http_status = 422
    remedy = "Invalid params: fix the field data names and send again"


class NotConfigured(ServiceError):
    """A role has no model or no API key, so no task could run; `data` names what to set."""

    code = NOT_CONFIGURED
    http_status = 422
    remedy = "A role has no usable model or API key: set the key or variable data names"


class TaskNotFound(ServiceError):
    """No task has this id."""

    code = TASK_NOT_FOUND
    http_status = 404
    remedy = "Task not found: check the id (task/list shows the tasks)"


class InvalidState(ServiceError):
    """The task exists but its state does not allow this action (e.g. cancel a completed task).

    It is also the answer to the loser of two racing actions on one task (two cancels, an
    approval and a rejection), and to an action that raced the task's own ending.
    """

    code = INVALID_STATE
    http_status = 409
    remedy = (
        "The task's state does not allow this (e.g. cancel a completed task, or another "
        "action on it came first): read it with task/get and act on the state it is in"
    )


class Busy(ServiceError):
    """A bounded queue is full: the client should retry after `retry_after_s` seconds.

    Refusing early keeps memory bounded and the daemon responsive for other clients; REST
    answers 429 with a Retry-After header, JSON-RPC this code with `data.retry_after_s`.
    """

    code = BUSY
    http_status = 429
    remedy = "Busy: a bounded queue is full; send again after data.retry_after_s seconds"

    def __init__(self, message: str, retry_after_s: float = 1.0, data: Any = None) -> None:
        super().__init__(message, {"retry_after_s": retry_after_s, **(data or {})})
        self.retry_after_s = retry_after_s


class StorageFull(ServiceError):
    """The disk under the task store is full (or failing): the request wrote nothing.

    Tasks accepted earlier wait and continue once space returns (the runner retries with
    backoff, then fails them with this reason); the same request succeeds then too.
    """

    code = STORAGE_FULL
    http_status = 507
    remedy = "Storage full: free disk space where data.where says, then send again"

    @classmethod
    def from_store(cls, exc: StoreFull) -> StorageFull:
        return cls(str(exc), {"where": exc.where, "reason": exc.reason})


#: Every code a reply can carry, with what it means and what to do.
ERROR_CODES: dict[int, str] = {
    PARSE_ERROR: "Parse error: the body is not strict JSON (UTF-8, no NaN); fix it and resend",
    INVALID_REQUEST: "Invalid Request: not a JSON-RPC 2.0 request object; data says what is wrong",
    METHOD_NOT_FOUND: "Method not found: data lists the methods available",
    **{
        error.code: error.remedy
        for error in (
            InvalidParams,
            ServiceError,
            TaskNotFound,
            InvalidState,
            NotConfigured,
            Busy,
            StorageFull,
        )
    },
}
