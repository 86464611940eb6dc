"""How every error leaves the HTTP API: one body shape, `{"error": {...}}`, whatever failed.

The service's errors carry their own code and status; bad input found by FastAPI or pydantic
becomes a 422 naming the field (code -32602, as in JSON-RPC); FastAPI's own refusals (unknown
path, wrong method, unreadable body) keep their status but take the same shape instead of
FastAPI's `{"detail": ...}`, with a JSON-RPC code and `data.status`, as the guard's refusals
(401, 403, 421, 413) do.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon.service.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Busy,
    ServiceError,
    StorageFull,
)
from daemon.store.errors import StoreFull

#: JSON-RPC codes for FastAPI's own refusals: no such route or method, an unreadable body.
_HTTP_CODES = {404: METHOD_NOT_FOUND, 405: METHOD_NOT_FOUND, 400: PARSE_ERROR}


def _bad_input(fields: list[dict[str, Any]]) -> JSONResponse:
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse(
        {"error": {"code": INVALID_PARAMS, "message": message, "data": fields}}, status_code=422
    )


async def _service_error(_req: Request, exc: ServiceError) -> JSONResponse:
    headers = (
        {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        if isinstance(exc, Busy)
        else None
    )
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "data": exc.data}},
        status_code=exc.http_status,
        headers=headers,
    )


async def _store_full(req: Request, exc: StoreFull) -> JSONResponse:
    return await _service_error(req, StorageFull.from_store(exc))


async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
    fields = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            # The location is a character offset into the body, not a field.
            fields.append(
                {
                    "field": "body",
                    "message": f"not valid JSON ({e.get('msg')}, at character {e['loc'][-1]})",
                }
            )
            continue
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        fields.append({"field": ".".join(loc) or "body", "message": e.get("msg", "")})
    return _bad_input(fields)


async def _model_error(_req: Request, exc: ValidationError) -> JSONResponse:
    # A route that builds a params model from its path or query (REST) raises pydantic's
    # own error: bad input all the same, so a 422 naming the field, not a 500.
    fields: list[dict[str, Any]] = [
        {"field": ".".join(str(p) for p in e["loc"]) or "params", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return _bad_input(fields)


async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths (404), wrong methods (405) and bodies FastAPI could not read (400: too
    # deep, not UTF-8) get the same error shape as everything else, not {"detail": ...}.
    message = str(exc.detail)
    code = _HTTP_CODES.get(exc.status_code, INVALID_REQUEST)
    if exc.status_code == 400:
        message = "body: not valid JSON (not UTF-8, or nested too deeply)"
    return JSONResponse(
        {"error": {"code": code, "message": message, "data": {"status": exc.status_code}}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error `app` raises in tierd's error shape."""
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(StoreFull)(_store_full)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(ValidationError)(_model_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
