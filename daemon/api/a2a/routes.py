"""The A2A routes the app mounts: the agent card and the JSON-RPC binding at /a2a."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.server.routes import create_jsonrpc_routes
from a2a.utils.errors import ContentTypeNotSupportedError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from daemon.api.a2a.card import RPC_PATH, card_route
from daemon.api.a2a.handler import TierdRequestHandler
from daemon.api.strict_json import decode_json
from daemon.service.service import Service
from daemon.store.feed import EventFeed

#: Seconds open A2A streams get to finish when the daemon stops (below uvicorn's 5 s).
SHUTDOWN_GRACE_S = 1.0
#: Request bodies the JSON-RPC binding takes (A2A 1.0: "Content-Type: application/json").
JSON_TYPES = frozenset({"application/json", "application/a2a+json"})

Endpoint = Callable[[Request], Awaitable[Response]]


def _json_only(endpoint: Endpoint) -> Endpoint:
    """The endpoint, for strict JSON bodies only, answering anything else in JSON-RPC's terms:
    a body that says it is not JSON gets A2A's ContentTypeNotSupportedError, one that is not
    strict JSON (NaN, a lone surrogate: see `decode_json`) a parse error, before the SDK's
    lenient parser takes it."""

    async def checked(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in JSON_TYPES:
            error = ContentTypeNotSupportedError(
                f"Content-Type {media or '(none)'}: the JSON-RPC binding takes application/json"
            )
            return JSONResponse(build_error_response(None, error))
        try:
            decode_json(await request.body())  # Request caches the body: the SDK reads it again
        except ValueError as exc:
            # Written out: a2a-sdk 1.3's build_error_response maps JSONParseError to its
            # internal-error model, whose code must be -32603, and raises on -32700.
            parse_error = {"code": -32700, "message": f"Invalid JSON payload: body: {exc}"}
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": parse_error})
        return await endpoint(request)

    return checked


def a2a_routes(service: Service, feed: EventFeed) -> list[BaseRoute]:
    """The card route and the JSON-RPC route, over the service."""
    handler = TierdRequestHandler(service, feed)
    rpc = create_jsonrpc_routes(handler, rpc_url=RPC_PATH, shutdown_grace_period=SHUTDOWN_GRACE_S)
    routes: list[BaseRoute] = [card_route()]
    for route in rpc:
        assert isinstance(route, Route)
        endpoint = _json_only(route.endpoint)
        # The same endpoint at /a2a/ too: a client that joins "/" onto the interface URL
        # (httpx with base_url=".../a2a", as the A2A TCK does) posts there, and a redirect
        # would fail its POST (httpx does not follow it).
        for path in (route.path, route.path + "/"):
            routes.append(Route(path, endpoint=endpoint, methods=["POST"]))
    return routes
