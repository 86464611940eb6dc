"""The ASGI application: the security guard around strict JSON around FastAPI around the daemon.

FastAPI carries the REST routes (`rest`), the event streams (`events`) and the OpenAPI
document (`openapi`); POST /rpc (the JSON-RPC dispatcher, `rpc`) is answered in front of it
(`rpc_http`), its route kept for the document; errors leave in one shape
(`http_errors`). MCP is served at /mcp (`mcp`), A2A's agent card and JSON-RPC binding at
/.well-known/agent-card.json and /a2a (`a2a`), both loaded on first use (`lazy_protocols`).
The daemon's parts are built in `composition`; `connections` bounds the connections under them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from daemon import __version__
from daemon.api import events
from daemon.api.composition import Daemon
from daemon.api.connections import ConnectionLimits
from daemon.api.dashboard import DashboardSessions, dashboard_router
from daemon.api.guard import Guard, attachment_body_cap
from daemon.api.http_errors import install_error_handlers
from daemon.api.json_body import StrictJsonBody
from daemon.api.lazy_protocols import LazyProtocols
from daemon.api.openapi import openapi_document, rpc_openapi
from daemon.api.rest import router
from daemon.api.rpc import RpcDispatcher, encode_reply
from daemon.api.rpc_http import RpcHttp


def fastapi_app(
    daemon: Daemon, stream_send_timeout_s: float = events.STREAM_SEND_TIMEOUT_S
) -> FastAPI:
    """FastAPI with the daemon's lifespan, its error shape, the REST routes, the event
    streams, /rpc and /mcp."""
    protocols = LazyProtocols(daemon.service, daemon.feed)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await daemon.start()
        try:
            yield
        finally:
            # MCP sessions end before the daemon stops: none of them outlives the store.
            try:
                await protocols.close()
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
    app.state.stream_send_timeout_s = stream_send_timeout_s
    install_error_handlers(app)
    # One dispatcher, shared with `RpcHttp` in front: one set of kept answers.
    dispatcher = RpcDispatcher(daemon.service)
    app.state.rpc = dispatcher

    @app.post("/rpc", tags=["rpc"], openapi_extra=rpc_openapi(), response_class=Response)
    async def rpc(request: Request) -> Response:
        reply = await dispatcher.handle_body(await request.body())
        if reply is None:
            return Response(status_code=204)
        return Response(encode_reply(reply), media_type="application/json")

    app.include_router(router)
    app.include_router(events.router)
    app.router.routes.extend(protocols.routes())
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def create_app(
    daemon: Daemon,
    token: str,
    *,
    allow_remote: bool = False,
    instance_id: str | None = None,
    dashboard: DashboardSessions | None = None,
) -> Any:
    """The ASGI application: the guard around FastAPI around the daemon. ValueError for a
    server setting out of its range. `instance_id` is echoed by /healthz."""
    limits = ConnectionLimits.from_config(daemon.config)
    app = fastapi_app(daemon, limits.send_timeout_s)
    app.state.instance_id = instance_id
    # The router and the guard share one set of sessions: the guard admits what it signed in.
    sessions = dashboard or DashboardSessions()
    app.include_router(dashboard_router(sessions))
    max_body = int(daemon.config.get("server.max_body_bytes"))
    return Guard(
        # POST /rpc is answered in front of FastAPI (`rpc_http`), the rest behind it.
        RpcHttp(StrictJsonBody(app), app.state.rpc),
        token=token,
        allowed_origins=list(daemon.config.get("server.allowed_origins")),
        max_body_bytes=max_body,
        allow_remote=allow_remote,
        dashboard=sessions,
        # A submit carrying attachments may be larger by a task's worth of files as base64.
        max_attachment_body_bytes=attachment_body_cap(
            max_body, int(daemon.config.get("attachments.max_task_bytes"))
        ),
    )
