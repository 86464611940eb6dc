"""Strict JSON for REST bodies: the JSON-RPC adapter's rules, applied before FastAPI parses.

Its own layer because FastAPI's parser is lenient in ways that fail later, far from the input.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from daemon.api.guard import read_body, replaying
from daemon.api.strict_json import decode_json
from daemon.service.errors import PARSE_ERROR


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
        if (
            scope["type"] != "http"
            or scope["method"] not in {"POST", "PUT", "PATCH"}
            or scope["path"] == "/rpc"
        ):  # the dispatcher answers in JSON-RPC's terms
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        if body.strip():
            try:
                decode_json(body)
            except ValueError as exc:
                reply = JSONResponse(
                    {
                        "error": {
                            "code": PARSE_ERROR,
                            "message": f"body: {exc}",
                            "data": {"field": "body"},
                        }
                    },
                    status_code=400,
                )
                await reply(scope, receive, send)
                return
        await self.app(scope, replaying(body, receive), send)
