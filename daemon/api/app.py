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
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon import __version__
from daemon.api.guard import Guard
from daemon.api.openapi import openapi_document, rpc_openapi
from daemon.api.rest import router
from daemon.api.rpc import RpcDispatcher, encode_reply
from daemon.api.strict_json import StrictJsonBody
from daemon.config.layers import Config
from daemon.engine.runner import Runner
from daemon.governor.governor import ConcurrencySettings, Governor
from daemon.home.paths import Homes
from daemon.service.errors import Busy, ServiceError
from daemon.service.service import Service
from daemon.store.feed import EventFeed
from daemon.store.store import Store


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
        self.governor = Governor(
            ConcurrencySettings.from_config(self.config.get("concurrency")),
            on_change=self._on_governor_change,
        )
        self.runner = Runner(self.store, self.governor, checkpoints=self.homes.checkpoints)
        self.service = Service(self.store, self.homes, self.config, self.runner)

    def _on_governor_change(self, change: dict[str, Any]) -> None:
        # Called from the governor's loop; the event write must not block it. The task is
        # kept until done so it is not garbage-collected mid-write.
        task = asyncio.get_running_loop().create_task(
            self.store.append_event(None, "governor.limit", change)
        )
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


def create_app(daemon: Daemon, token: str, *, allow_remote: bool = False) -> Any:
    """The ASGI application: the guard around FastAPI around the daemon."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await daemon.start()
        try:
            yield
        finally:
            await daemon.stop()

    app = FastAPI(
        title="tierd",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Local daemon running hierarchical teams of AI agents.",
    )
    app.state.daemon = daemon
    dispatcher = RpcDispatcher(daemon.service)

    @app.exception_handler(ServiceError)
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

    @app.exception_handler(RequestValidationError)
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
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            {"error": {"code": -32602, "message": message, "data": fields}}, status_code=422
        )

    @app.exception_handler(ValidationError)
    async def _model_error(_req: Request, exc: ValidationError) -> JSONResponse:
        # A route that builds a params model from its path or query (REST) raises pydantic's
        # own error: bad input all the same, so a 422 naming the field, not a 500.
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]) or "params", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            {"error": {"code": -32602, "message": message, "data": fields}}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404), wrong methods (405) and bodies FastAPI could not read (400: too
        # deep, not UTF-8) get the same error shape as everything else, not {"detail": ...}.
        message = str(exc.detail)
        if exc.status_code == 400:
            message = "body: not valid JSON (not UTF-8, or nested too deeply)"
        return JSONResponse(
            {"error": {"status": exc.status_code, "message": message}},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.post("/rpc", tags=["rpc"], openapi_extra=rpc_openapi(), response_class=Response)
    async def rpc(request: Request) -> Response:
        reply = await dispatcher.handle_body(await request.body())
        if reply is None:
            return Response(status_code=204)
        return Response(encode_reply(reply), media_type="application/json")

    app.include_router(router)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return Guard(
        StrictJsonBody(app),
        token=token,
        allowed_origins=list(daemon.config.get("server.allowed_origins")),
        max_body_bytes=int(daemon.config.get("server.max_body_bytes")),
        allow_remote=allow_remote,
    )
