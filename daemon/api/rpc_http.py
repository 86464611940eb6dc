"""POST /rpc over plain ASGI: the JSON-RPC dispatcher's answers, sent without FastAPI.

JSON-RPC is one route whose body the dispatcher reads and answers itself (`rpc`), so
FastAPI's layers (routing, dependencies, its exception middleware, a Request and a Response
per call) only cost time on the API's busiest path: a client polling task/get. This app
answers POST /rpc and hands everything else to the app behind it. It sits inside the guard,
which has checked Host, Origin and the token and capped the body, and inside the CORS layer;
the answer is the one FastAPI's route gave: 200 with the reply as JSON, or 204 with no body
when the request held only notifications. FastAPI keeps its /rpc route for the OpenAPI
document (`openapi.rpc_openapi`).
"""

from __future__ import annotations

from daemon.api.guard import ASGIApp, Receive, Scope, Send, read_body
from daemon.api.rpc import RpcDispatcher, encode_reply

__all__ = ["RPC_PATH", "RpcHttp"]

#: Where JSON-RPC is served.
RPC_PATH = "/rpc"
_JSON = (b"content-type", b"application/json")


class RpcHttp:
    """ASGI: POST /rpc answered by `dispatcher`; anything else passed on to `app`."""

    def __init__(self, app: ASGIApp, dispatcher: RpcDispatcher) -> None:
        self.app = app
        self.dispatcher = dispatcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != RPC_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        started = False

        async def respond(status: int, headers: list[tuple[bytes, bytes]], data: bytes) -> None:
            nonlocal started
            started = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        try:
            reply = await self.dispatcher.handle_body(body)
            if reply is None:  # only notifications: nothing to say
                await respond(204, [], b"")
                return
            data = encode_reply(reply)
            await respond(200, [(b"content-length", str(len(data)).encode()), _JSON], data)
        except Exception:
            # A bug of the daemon's, as FastAPI answers one: a bare 500, and the traceback in
            # the daemon's log (uvicorn logs what is raised).
            if not started:
                await respond(
                    500,
                    [
                        (b"content-length", b"21"),
                        (b"content-type", b"text/plain; charset=utf-8"),
                    ],
                    b"Internal Server Error",
                )
            raise
