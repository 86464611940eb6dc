"""The MCP endpoint: an MCPServer over the service, its /mcp route and its session manager.

The guard in front of the whole app already checks the Host, the Origin and the bearer token
for /mcp, so the SDK's own DNS-rebinding check is off (it would accept any localhost Origin,
which the guard refuses unless configured). Sessions are stateful: progress notifications go
to the request that asked for them. The tasks extension (`tasks_ext`) is served beside the
tools, to the clients that declare it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute

from daemon import __version__
from daemon.api.mcp.resources import register_resources
from daemon.api.mcp.tasks_ext import TierdTasks
from daemon.api.mcp.tools import register_tools
from daemon.service.service import Service
from daemon.store.feed import EventFeed

PATH = "/mcp"
INSTRUCTIONS = (
    "tierd runs a team of AI agents on a task: a planner splits it into parallel streams, "
    "cheap executors do them, an orchestrator reviews and merges one result. Submit with "
    "submit_task (returns at once), follow with wait_task until settled, answer questions "
    "with answer_questions and decide on results awaiting approval with approve_result. "
    "Clients of the io.modelcontextprotocol/tasks extension get a task for submit_task."
)


def _quiet_server(service: Service, feed: EventFeed) -> MCPServer:
    """The MCPServer, built without touching the process's logging.

    MCPServer's constructor calls `logging.basicConfig` with a handler of its own; the daemon
    configures only its `tierd` logger, so that would start printing every library's INFO
    lines. The root logger is put back as it was.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        server = MCPServer(
            "tierd",
            title="tierd",
            version=__version__,
            instructions=INSTRUCTIONS,
            extensions=[TierdTasks(service)],
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    register_tools(server, service, feed)
    register_resources(server, service)
    return server


@dataclass
class McpEndpoint:
    server: MCPServer
    routes: list[BaseRoute]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager, for the app's lifespan."""
        async with self.server.session_manager.run():
            yield


def mcp_endpoint(service: Service, feed: EventFeed) -> McpEndpoint:
    """The endpoint to mount: its routes go into the FastAPI app, `running` into the lifespan."""
    server = _quiet_server(service, feed)
    app = server.streamable_http_app(
        streamable_http_path=PATH,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return McpEndpoint(server, list(app.routes))
