"""Fault injection: which failure rule a call meets, and what each kind of failure does.

Some kinds replace the answer (`timeout` hangs, `reset` drops the connection, `429` and `500`
answer an error); the others spoil a real answer (`empty`, `malformed`, `wrapped` change its
content, `truncated` cuts the body or the stream on the wire, see `replies.py`).
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import struct
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from daemon.tools.simulator.calls import CLIENT_CLOSED, NO_RESPONSE, CallInfo, CallRecord, SimState
from daemon.tools.simulator.replies import error_response, wait_or_gone
from daemon.tools.simulator.scenario import FailureRule, same_model

if TYPE_CHECKING:
    import uvicorn

__all__ = ["ANSWER_REPLACING", "JSON_PURPOSES", "choose_failure", "fail", "spoil"]

#: The kinds that answer instead of the scenario (the others change the scenario's answer).
ANSWER_REPLACING = frozenset({"timeout", "reset", "429", "500"})
#: The purposes whose answer is JSON (a failure can make it malformed or wrap it in prose).
JSON_PURPOSES = frozenset({"plan", "execute", "review", "conflicts"})


def choose_failure(state: SimState, call: CallInfo, rng: random.Random) -> FailureRule | None:
    """The failure this call gets, if any: the first matching rule that fires.

    Every matching rule counts the call, fired or not, so `first = N` means the first N calls
    the rule matches.
    """
    sc = state.scenario
    if any(same_model(m, call.model) for m in sc.fail_models):
        return FailureRule(kind="500", status=500)
    chosen = None
    for index, rule in enumerate(sc.failures):
        if not rule.matches(call):
            continue
        state.rule_hits[index] += 1
        if chosen is None and (state.rule_hits[index] <= rule.first or rng.random() < rule.rate):
            chosen = rule
    return chosen


def spoil(content: str, failure: FailureRule | None, purpose: str) -> str:
    """The answer's content as a failure of kind empty, malformed or wrapped leaves it."""
    if failure is None:
        return content
    if failure.kind == "empty":
        return ""  # every purpose: an empty merge is as useless as an empty plan
    if purpose in JSON_PURPOSES:
        if failure.kind == "malformed":
            return content[: max(1, len(content) // 2)]  # cut mid-object: not JSON
        if failure.kind == "wrapped":
            return f"Sure, here it is:\n```json\n{content}\n```\nAnything else?"
    return content


async def fail(
    request: Request,
    call: CallInfo,
    rec: CallRecord,
    failure: FailureRule,
    latency: float,
    server: uvicorn.Server | None,
) -> Response:
    """The response of a failure in ANSWER_REPLACING, recorded in the call's log entry."""
    if failure.kind == "timeout":
        gone = await wait_or_gone(request, failure.hang_s)
        rec.finish(CLIENT_CLOSED if gone else 504, disconnected=gone)
        return error_response(504, "simulated timeout", "timeout")
    if failure.kind == "reset":
        # Dropped at once, as a crashing provider or a proxy restart does.
        rec.finish(NO_RESPONSE)
        drop_connection(server, request)
        return Response(status_code=NO_RESPONSE)
    # Errors come back fast, as real providers' do.
    if await wait_or_gone(request, min(latency, 0.01)):
        rec.finish(CLIENT_CLOSED, disconnected=True)
        return Response(status_code=CLIENT_CLOSED)
    if failure.kind == "429":
        rec.finish(429)
        return _rate_limited(failure.retry_after)
    rec.finish(failure.status)
    return error_response(
        failure.status, f"simulated server error for model {call.model}", "server_error"
    )


def _rate_limited(retry_after: float) -> Response:
    headers = {"Retry-After": str(math.ceil(retry_after))}
    if retry_after != math.ceil(retry_after):
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    return error_response(429, "simulated rate limit: slow down", "rate_limit_error", headers)


def drop_connection(server: uvicorn.Server | None, request: Request) -> None:
    """Close the request's TCP connection with a reset, sending nothing.

    ASGI gives an app no way to drop its connection, so this finds uvicorn's protocol
    object for the client's address among the server's connections.
    """
    client = request.scope.get("client")
    for conn in list(server.server_state.connections) if server is not None else []:
        transport = getattr(conn, "transport", None)
        # Not every protocol class declares `client`: read it as an attribute that may lack.
        if client is None or transport is None or getattr(conn, "client", None) != tuple(client):
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: the close sends RST, the client sees "connection reset by peer".
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return
    raise RuntimeError("simulator: cannot find the connection to reset")
