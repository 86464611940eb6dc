"""The FastAPI application factory and the daemon's parts wired together.

`Daemon` owns the long-lived objects (store, event feed, governor, runner, service) and their
start and stop order; `create_app` puts the HTTP adapters and the security guard around it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .config import Config
from .errors import PARSE_ERROR, Busy, ServiceError
from .events import EventFeed
from .governor import ConcurrencySettings, Governor
from .homes import Homes
from .rest import router
from .rpc import METHODS, RpcDispatcher, decode_json, encode_reply
from .runner import Runner
from .security import Guard
from .service import Service
from .store import Store


def store_url(homes: Homes, config: Config) -> str:
    return config.get("store.url") or f"sqlite:///{homes.database}"


@dataclass
class Daemon:
    homes: Homes
    config: Config
    store: Store = field(init=False)
    feed: EventFeed = field(init=False)
    governor: Governor = field(init=False)
    runner: Runner = field(init=False)
    service: Service = field(init=False)
    started: bool = False
    _pending: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = Store(store_url(self.homes, self.config))
        self.feed = EventFeed(self.store)
        self.governor = Governor(ConcurrencySettings.from_config(self.config.get("concurrency")),
                                 on_change=self._on_governor_change)
        self.runner = Runner(self.store, self.governor, checkpoints=self.homes.checkpoints)
        self.service = Service(self.store, self.homes, self.config, self.runner)

    def _on_governor_change(self, change: dict[str, Any]) -> None:
        # Called from the governor's loop; the event write must not block it. The task is
        # kept until done so it is not garbage-collected mid-write.
        task = asyncio.get_running_loop().create_task(
            self.store.append_event(None, "governor.limit", change))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        await self.store.open()
        await self.feed.start()
        await self.governor.start()
        self.runner.preload()
        await self.runner.resume_all()

    def begin_shutdown(self) -> None:
        """First step of a stop: let long-lived responses (SSE) end so the server can close."""
        self.feed.close()

    async def stop(self) -> None:
        self.feed.close()
        await self.runner.stop()
        await self.governor.stop()
        # Closing the store waits for queued writes: nothing in flight is lost.
        await self.store.close()


class StrictJsonBody:
    """Refuses a REST body that is not strict JSON, with the same rules as JSON-RPC.

    FastAPI's parser takes NaN, 1e400 (as infinity) and lone UTF-16 surrogates, which then
    fail later where they are written (a reply, the config file, SQLite), and it answers a
    too-deep document with a bare 400. `decode_json` is the one definition of acceptable
    JSON for both adapters. Runs inside the guard, so the body is already read and capped.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}
                or scope["path"] == "/rpc"):  # the dispatcher answers in JSON-RPC's terms
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body.strip():
            try:
                decode_json(body)
            except ValueError as exc:
                reply = JSONResponse({"error": {"code": PARSE_ERROR, "message": f"body: {exc}",
                                                "data": {"field": "body"}}}, status_code=400)
                await reply(scope, receive, send)
                return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(daemon: Daemon, token: str, *, allow_remote: bool = False) -> Any:
    """The ASGI application: the guard around FastAPI around the daemon."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await daemon.start()
        try:
            yield
        finally:
            await daemon.stop()

    app = FastAPI(title="tierd", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Local daemon running hierarchical teams of AI agents.")
    app.state.daemon = daemon
    dispatcher = RpcDispatcher(daemon.service)

    @app.exception_handler(ServiceError)
    async def _service_error(_req: Request, exc: ServiceError) -> JSONResponse:
        headers = ({"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
                   if isinstance(exc, Busy) else None)
        return JSONResponse({"error": {"code": exc.code, "message": exc.message,
                                       "data": exc.data}}, status_code=exc.http_status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                # The location is a character offset into the body, not a field.
                fields.append({"field": "body", "message": f"not valid JSON ({e.get('msg')}, "
                                                           f"at character {e['loc'][-1]})"})
                continue
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
            fields.append({"field": ".".join(loc) or "body", "message": e.get("msg", "")})
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": {"code": -32602, "message": message, "data": fields}},
                            status_code=422)

    @app.exception_handler(ValidationError)
    async def _model_error(_req: Request, exc: ValidationError) -> JSONResponse:
        # A route that builds a params model from its path or query (REST) raises pydantic's
        # own error: bad input all the same, so a 422 naming the field, not a 500.
        fields = [{"field": ".".join(str(p) for p in e["loc"]) or "params",
                   "message": e["msg"]} for e in exc.errors(include_url=False,
                                                           include_input=False)]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": {"code": -32602, "message": message, "data": fields}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404), wrong methods (405) and bodies FastAPI could not read (400: too
        # deep, not UTF-8) get the same error shape as everything else, not {"detail": ...}.
        message = str(exc.detail)
        if exc.status_code == 400:
            message = "body: not valid JSON (not UTF-8, or nested too deeply)"
        return JSONResponse({"error": {"status": exc.status_code, "message": message}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.post("/rpc", tags=["rpc"], openapi_extra=_rpc_openapi(),
              response_class=Response)
    async def rpc(request: Request) -> Response:
        reply = await dispatcher.handle_body(await request.body())
        if reply is None:
            return Response(status_code=204)
        return Response(encode_reply(reply), media_type="application/json")

    app.include_router(router)
    app.openapi = lambda: _openapi_document(app)  # type: ignore[method-assign]
    return Guard(StrictJsonBody(app), token=token,
                 allowed_origins=list(daemon.config.get("server.allowed_origins")),
                 max_body_bytes=int(daemon.config.get("server.max_body_bytes")),
                 allow_remote=allow_remote)


# --- the OpenAPI document ------------------------------------------------------------------
# FastAPI documents what the route signatures say. The guard's refusals, the service's errors
# and the error body's shape live elsewhere, so they are added here: a client (or schemathesis)
# reading /openapi.json then knows every status it can get and what the body looks like.

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "code": {"type": "integer", "description": "JSON-RPC style code (see README)"},
            "status": {"type": "integer", "description": "HTTP status, from the guard"},
            "message": {"type": "string"},
            "data": {"description": "details; for bad input, the field(s) at fault"},
        },
    }},
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
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _rpc_openapi() -> dict[str, Any]:
    """/rpc takes the raw body (the dispatcher parses it), so its shape is described here."""
    request = {
        "type": "object",
        "required": ["jsonrpc", "method"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "method": {"enum": [*METHODS, "rpc/discover"]},
            "params": {"type": "object", "description": "named parameters (see rpc/discover)"},
            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
                   "description": "absent for a notification, which gets no reply"},
        },
    }
    reply = {"type": "object", "required": ["jsonrpc", "id"],
             "properties": {"jsonrpc": {"const": "2.0"}, "result": {}, "id": {},
                            "error": {"type": "object", "required": ["code", "message"]}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "anyOf": [request, {"type": "array", "items": request, "minItems": 1}]}}}},
        "responses": {
            "200": {"description": "The JSON-RPC reply (errors too: they are in the body)",
                    "content": {"application/json": {"schema": {
                        "anyOf": [reply, {"type": "array", "items": reply}]}}}},
            "204": {"description": "Only notifications were sent: nothing to reply"},
        },
    }


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the security scheme, error responses and links."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    # FastAPI's own 422 shape ({"detail": [...]}) is not what tierd sends.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    doc["components"]["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "The token from daemon.json (mode 0600) in TIERD_HOME"}}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            if "422" in responses or (method in ("post", "put") and path != "/rpc"):
                responses["422"] = _error_response("Bad input: data names the field")
            if path.endswith("/events") and "200" in responses:
                responses["200"]["content"] = {"text/event-stream": {"schema": {
                    "type": "string", "description": "Server-Sent Events; id is the event id"}}}
            if path == "/healthz":
                op["security"] = []
                continue
            op["security"] = [{"bearer": []}]
            extra = dict(_GUARD_RESPONSES)
            if method in ("post", "put"):
                extra["413"] = "Body over server.max_body_bytes"
                if path != "/rpc":
                    extra["400"] = ("Body is not strict JSON (not UTF-8, NaN, a number out "
                                    "of range, a lone surrogate, nested too deeply)")
            if path.startswith("/v1/"):
                extra["429"] = "Busy: retry after the Retry-After header's seconds"
            if "{task_id}" in path:
                extra.update(_TASK_RESPONSES)
                if method == "post":
                    extra.update(_STATE_RESPONSES)
            for status, text in extra.items():
                responses.setdefault(status, _error_response(text))
    submit = doc["paths"].get("/v1/tasks", {}).get("post")
    if submit is not None:
        # Links let a client (and schemathesis' stateful tests) follow a submit to the
        # operations on the task it created.
        task_id = {"task_id": "$response.body#/task_id"}
        links = {}
        for name, (path, method) in {
                "GetTask": ("/v1/tasks/{task_id}", "get"),
                "CancelTask": ("/v1/tasks/{task_id}/cancel", "post"),
                "AnswerTask": ("/v1/tasks/{task_id}/answer", "post"),
                "ApproveTask": ("/v1/tasks/{task_id}/approve", "post")}.items():
            target = doc["paths"].get(path, {}).get(method)
            if target is not None and "operationId" in target:
                links[name] = {"operationId": target["operationId"], "parameters": task_id}
        submit["responses"]["202"]["links"] = links
    app.openapi_schema = doc
    return doc
