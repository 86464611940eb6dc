"""The OpenAPI document: FastAPI's, plus what the route signatures cannot say.

The guard's refusals, the service's errors and the error body's shape live outside the routes,
so they are added here: a client (or schemathesis) reading /openapi.json then knows every
status it can get and what the body looks like.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from daemon.api.rpc_methods import DISCOVER, METHODS

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "description": "JSON-RPC style code (see README)"},
                "message": {"type": "string"},
                "data": {
                    "description": (
                        "details: for bad input, the field(s) at fault; for a refusal of the "
                        "request itself (guard, unknown path, connection limits), "
                        '{"status": <HTTP status>}'
                    )
                },
            },
        }
    },
}
_GUARD_RESPONSES = {
    "401": "No bearer token, a wrong one, or one in the query string",
    "403": "Origin header not in server.allowed_origins",
    "421": "Host header does not name a loopback address",
}
_TASK_RESPONSES = {
    "404": "No task with this id",
}
_STATE_RESPONSES = {
    "409": "The task's state does not allow this action",
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def rpc_openapi() -> dict[str, Any]:
    """/rpc takes the raw body (the dispatcher parses it), so its shape is described here."""
    request = {
        "type": "object",
        "required": ["jsonrpc", "method"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "method": {"enum": [*METHODS, DISCOVER]},
            "params": {"type": "object", "description": "named parameters (see rpc/discover)"},
            "id": {
                "anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
                "description": "absent for a notification, which gets no reply",
            },
        },
    }
    reply = {
        "type": "object",
        "required": ["jsonrpc", "id"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "result": {"description": "the method's result; rpc/discover describes each one"},
            "id": {},
            "error": {"type": "object", "required": ["code", "message"]},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [request, {"type": "array", "items": request, "minItems": 1}]
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "The JSON-RPC reply (errors too: they are in the body)",
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [reply, {"type": "array", "items": reply}]}
                    }
                },
            },
            "204": {"description": "Only notifications were sent: nothing to reply"},
        },
    }


def _operation_errors(path: str, method: str) -> dict[str, str]:
    """The error statuses an operation can answer beyond its own: the guard's, and the
    service's for a body, a task id or a state."""
    extra = dict(_GUARD_RESPONSES)
    if method in ("post", "put"):
        extra["413"] = "Body over server.max_body_bytes"
        if path != "/rpc":
            extra["400"] = (
                "Body is not strict JSON (not UTF-8, NaN, a number out "
                "of range, a lone surrogate, nested too deeply)"
            )
    if path.startswith("/v1/"):
        extra["429"] = "Busy: retry after the Retry-After header's seconds"
    if "{task_id}" in path:
        extra.update(_TASK_RESPONSES)
        if method in ("post", "delete"):
            extra.update(_STATE_RESPONSES)
    return extra


def _describe_operation(path: str, method: str, op: dict[str, Any]) -> None:
    """Add to one operation what its signature cannot say: security, errors, event streams."""
    responses = op.setdefault("responses", {})
    if "422" in responses or (method in ("post", "put") and path != "/rpc"):
        responses["422"] = _error_response("Bad input: data names the field")
    if path.endswith("/events") and "200" in responses:
        responses["200"]["content"] = {
            "text/event-stream": {
                "schema": {
                    "type": "string",
                    "description": "Server-Sent Events; id is the event id",
                }
            }
        }
    if path == "/healthz":
        op["security"] = []
        return
    op["security"] = [{"bearer": []}]
    for status, text in _operation_errors(path, method).items():
        responses.setdefault(status, _error_response(text))


def _link_submit(paths: dict[str, Any]) -> None:
    """Links let a client (and schemathesis' stateful tests) follow a submit to the
    operations on the task it created."""
    submit = paths.get("/v1/tasks", {}).get("post")
    if submit is None:
        return
    task_id = {"task_id": "$response.body#/task_id"}
    links = {}
    for name, (path, method) in {
        "GetTask": ("/v1/tasks/{task_id}", "get"),
        "CancelTask": ("/v1/tasks/{task_id}/cancel", "post"),
        "AnswerTask": ("/v1/tasks/{task_id}/answer", "post"),
        "ApproveTask": ("/v1/tasks/{task_id}/approve", "post"),
        "DeleteTask": ("/v1/tasks/{task_id}", "delete"),
    }.items():
        target = paths.get(path, {}).get(method)
        if target is not None and "operationId" in target:
            links[name] = {"operationId": target["operationId"], "parameters": task_id}
    submit["responses"]["202"]["links"] = links


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the security scheme, error responses and links."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    # FastAPI's own 422 shape ({"detail": [...]}) is not what tierd sends.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    doc["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token from daemon.json (mode 0600) in TIERD_HOME",
        }
    }
    for path, item in doc["paths"].items():
        for method, op in item.items():
            _describe_operation(path, method, op)
    _link_submit(doc["paths"])
    app.openapi_schema = doc
    return doc
