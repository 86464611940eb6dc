"""The A2A routes the app mounts: the agent card and the JSON-RPC binding at /a2a."""

from __future__ import annotations

from a2a.server.routes import create_jsonrpc_routes
from starlette.routing import BaseRoute

from daemon.api.a2a.card import RPC_PATH, card_route
from daemon.api.a2a.handler import TierdRequestHandler
from daemon.service.service import Service
from daemon.store.feed import EventFeed

#: Seconds open A2A streams get to finish when the daemon stops (below uvicorn's 5 s).
SHUTDOWN_GRACE_S = 1.0


def a2a_routes(service: Service, feed: EventFeed) -> list[BaseRoute]:
    """The card route and the JSON-RPC route, over the service."""
    handler = TierdRequestHandler(service, feed)
    rpc = create_jsonrpc_routes(handler, rpc_url=RPC_PATH, shutdown_grace_period=SHUTDOWN_GRACE_S)
    return [card_route(), *rpc]
