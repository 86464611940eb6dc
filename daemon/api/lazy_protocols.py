"""MCP and A2A, loaded when a client first reaches them.

The MCP and A2A SDKs cost a daemon about 60 MiB of memory and seconds of CPU to import, and
many daemons are never reached over either protocol. So the app mounts placeholders at their
paths (/mcp; /.well-known/agent-card.json, /a2a and /a2a/), and the first request to one of
them imports the SDK in a thread (the event loop keeps answering), builds the real routes and
hands the request on; later requests go straight through.

MCP's session manager must be entered and left by one task (anyio's cancel scopes), so it runs
in a task of its own, started with the endpoint and stopped by `close()` from the lifespan,
before the daemon stops: no MCP session outlives the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.service.errors import INTERNAL_ERROR
from daemon.service.service import Service
from daemon.store.feed import EventFeed

if TYPE_CHECKING:
    from daemon.api.mcp.server import McpEndpoint

log = logging.getLogger("tierd.api")

#: Where the protocols live; each must equal what its module serves (checked when built).
MCP_PATHS = ("/mcp",)
A2A_PATHS = ("/.well-known/agent-card.json", "/a2a", "/a2a/")


class LazyEndpoint:
    """An ASGI app that builds the real one on its first request, once.

    The build is a task of its own that every first request awaits (shielded): a client
    that goes away while it runs does not cancel it for the others. A build that fails is
    answered 503 and tried again by the next request.
    """

    def __init__(self, module: str, build: Callable[[ModuleType], Awaitable[ASGIApp]]) -> None:
        self._module = module
        self._build = build
        self._app: ASGIApp | None = None
        self._loading: asyncio.Future[ASGIApp] | None = None

    @property
    def loaded(self) -> bool:
        return self._app is not None

    async def _load(self) -> ASGIApp:
        module = await asyncio.to_thread(importlib.import_module, self._module)
        self._app = await self._build(module)
        return self._app

    async def app(self) -> ASGIApp:
        if self._app is not None:
            return self._app
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        try:
            return await asyncio.shield(loading)
        except Exception:
            if loading.done() and self._loading is loading:
                self._loading = None  # the next request tries again
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            app = await self.app()
        except Exception as exc:
            log.warning("%s could not be loaded: %r", self._module, exc)
            error = {"code": INTERNAL_ERROR, "message": f"not available: {exc}; see the log"}
            await JSONResponse({"error": error}, status_code=503)(scope, receive, send)
            return
        await app(scope, receive, send)


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("MCP's session manager ended: %r", task.exception())


def _router(routes: list[BaseRoute], paths: tuple[str, ...]) -> Router:
    served = tuple(r.path for r in routes if isinstance(r, Route))
    if served != paths:
        raise RuntimeError(f"the protocol serves {served}, the placeholders are {paths}")
    return Router(routes=routes)


class LazyProtocols:
    """The placeholder routes for MCP and A2A, and the MCP session manager's life."""

    def __init__(self, service: Service, feed: EventFeed) -> None:
        self._service = service
        self._feed = feed
        self._mcp_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.mcp = LazyEndpoint("daemon.api.mcp.server", self._build_mcp)
        self.a2a = LazyEndpoint("daemon.api.a2a.routes", self._build_a2a)

    def routes(self) -> list[BaseRoute]:
        lazy = [(MCP_PATHS, self.mcp), (A2A_PATHS, self.a2a)]
        return [Route(path, endpoint=endpoint) for paths, endpoint in lazy for path in paths]

    async def _build_mcp(self, module: ModuleType) -> ASGIApp:
        if self._stopping.is_set():
            raise RuntimeError("the daemon is stopping")
        endpoint: McpEndpoint = module.mcp_endpoint(self._service, self._feed)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                async with endpoint.running():
                    started.set_result(None)
                    await self._stopping.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._mcp_task = asyncio.create_task(run(), name="tierd-mcp-sessions")
        self._mcp_task.add_done_callback(_log_end)
        await started
        return _router(endpoint.routes, MCP_PATHS)

    async def _build_a2a(self, module: ModuleType) -> ASGIApp:
        return _router(module.a2a_routes(self._service, self._feed), A2A_PATHS)

    async def close(self) -> None:
        """End MCP's sessions (if it was ever loaded) and refuse to load it again."""
        self._stopping.set()
        if self._mcp_task is not None:
            with contextlib.suppress(Exception):
                await self._mcp_task
