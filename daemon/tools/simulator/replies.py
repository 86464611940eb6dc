"""The replies on the wire, as OpenAI's chat-completions API sends them: an error, a whole
completion after its latency, or a server-sent-event stream of chunks spread over it.

Every wait watches the client: one that goes away ends the call as CLIENT_CLOSED in the log,
so tests see that cancelling a task closes its in-flight requests.

An answer with tool calls is sent as OpenAI sends one: `message.tool_calls` and finish reason
"tool_calls"; streamed, each call opens with a delta carrying its index, id, type and name,
and its arguments follow in pieces (`delta.tool_calls[].function.arguments`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from daemon.tools.simulator.calls import CLIENT_CLOSED, CallInfo, CallRecord

__all__ = ["DISCONNECT_POLL_S", "Answer", "error_response", "send", "wait_or_gone"]

#: How often a waiting answer checks whether its client has gone away.
DISCONNECT_POLL_S = 0.05
#: Characters of content per streamed chunk.
CHUNK_CHARS = 40


def error_response(
    status: int, message: str, type_: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in OpenAI's shape."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": type_}},
        status_code=status,
        headers=headers,
    )


async def wait_or_gone(request: Request, seconds: float) -> bool:
    """Sleep `seconds`, or until the client goes away; True if it did."""
    deadline = time.monotonic() + seconds
    while True:
        if await request.is_disconnected():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(DISCONNECT_POLL_S, left))


@dataclass
class Answer:
    """One successful answer about to be sent."""

    call: CallInfo
    rec: CallRecord
    content: str
    usage: dict[str, int]
    ident: str
    latency: float
    #: Cut the body (or the stream) half way, as a proxy that gave up does.
    truncated: bool = False
    #: Tool calls in OpenAI's format ({"id", "type", "function": {"name", "arguments"}}).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


async def send(request: Request, answer: Answer) -> Response:
    """The answer as a stream of chunks, or as one body once its latency has passed."""
    if answer.call.streaming:
        return StreamingResponse(
            _sse(request, answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    rec = answer.rec
    if await wait_or_gone(request, answer.latency):
        rec.finish(CLIENT_CLOSED, disconnected=True)
        return Response(status_code=CLIENT_CLOSED)
    rec.finish(200)
    body = _completion(answer)
    if answer.truncated:
        # A well-framed 200 whose JSON body stops half way, as a proxy that gave up does.
        raw = json.dumps(body).encode()
        return Response(raw[: len(raw) // 2], media_type="application/json")
    return JSONResponse(body)


def _completion(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["content"] = answer.content or None
        message["tool_calls"] = answer.tool_calls
    return {
        "id": answer.ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.call.model,
        "system_fingerprint": "tierd-sim",
        "choices": [
            {
                "index": 0,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
                "message": message,
            }
        ],
        "usage": answer.usage,
    }


class _Chunks:
    """The `data:` lines of one streamed answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.created = int(time.time())

    def __call__(
        self, delta: dict[str, Any], finish: str | None = None, with_usage: bool = False
    ) -> str:
        data: dict[str, Any] = {
            "id": self.answer.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.answer.call.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if with_usage:
            data["choices"], data["usage"] = [], self.answer.usage
        return f"data: {json.dumps(data)}\n\n"


def _split(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


def _deltas(answer: Answer) -> list[dict[str, Any]]:
    """The deltas after the first (the role): text pieces, then each tool call's."""
    if not answer.tool_calls:
        return [{"content": piece} for piece in _split(answer.content) or [""]]
    deltas: list[dict[str, Any]] = [{"content": piece} for piece in _split(answer.content)]
    for index, call in enumerate(answer.tool_calls):
        function = call["function"]
        opening = {"name": function["name"], "arguments": ""}
        deltas.append(
            {
                "tool_calls": [
                    {"index": index, "id": call["id"], "type": "function", "function": opening}
                ]
            }
        )
        for piece in _split(function["arguments"]):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


async def _sse(request: Request, answer: Answer) -> AsyncIterator[str]:
    rec = answer.rec
    pieces = _deltas(answer)
    if answer.truncated:
        # The stream ends half way: no finish_reason, no usage, no [DONE].
        pieces = pieces[: max(1, len(pieces) // 2)]
    # Half the latency before the first token, the rest spread over the pieces.
    first_wait, per_piece = answer.latency / 2, answer.latency / 2 / len(pieces)
    chunk = _Chunks(answer)
    try:
        if await wait_or_gone(request, first_wait):
            rec.finish(CLIENT_CLOSED, disconnected=True)
            return
        yield chunk({"role": "assistant", "content": None if answer.tool_calls else ""})
        for piece in pieces:
            if await wait_or_gone(request, per_piece):
                rec.finish(CLIENT_CLOSED, disconnected=True)
                return
            yield chunk(piece)
        if answer.truncated:
            rec.finish(200)
            return
        yield chunk({}, finish=answer.finish_reason)
        if answer.call.include_usage:
            yield chunk({}, with_usage=True)
        yield "data: [DONE]\n\n"
        rec.finish(200)
    except (asyncio.CancelledError, GeneratorExit):
        # Starlette cancels the body when the client disconnects mid-stream.
        if rec.status is None:
            rec.finish(CLIENT_CLOSED, disconnected=True)
        raise
