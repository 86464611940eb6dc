"""The calls: what one request asks (read from tierd's headers and the body), and the log of
every call the simulator took with the statistics `GET /_sim/stats` serves.

The log records whether the client went away before the answer was sent, and the step each
call belongs to (tierd's `X-Tierd-Step` header: the call's memo key, `exec:a:r0:a0`,
`review:a:r0`, `plan:0`, ...), so a test can prove that no saved step was asked for again and
that cancelling a task closed its in-flight request.

For a call offering tools it also records the tools offered, the tool calls answered, the
tool results the request carried (the results new since the model's last answer, cut short),
so a test can assert what a tool-using executor was told, and the scenario's watched strings
(`watch`) found anywhere in the request body.

Messages may carry content parts (`[{"type": "text" | "image_url" | "file", ...}]`): each call
records how many images and documents it received, a digest of each image (so a test can tell
which image reached which call), and the tokens they count (`media_tokens`, added to the
call's prompt tokens; see IMAGE_TOKENS and DOCUMENT_BYTES_PER_TOKEN for why these figures).

Each answered call also records its cached prompt tokens (`prompt_cache`: the prefix of its
prompt that an earlier call to the same model carried, as OpenAI caches prompts); the cache
lives in `SimState` and is cleared with the call log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from daemon.tools.simulator.prompt_cache import PromptCache
from daemon.tools.simulator.scenario import ROLE_OF_PURPOSE, Scenario

__all__ = [
    "CLIENT_CLOSED",
    "DOCUMENT_BYTES_PER_TOKEN",
    "IMAGE_TOKENS",
    "NO_RESPONSE",
    "PURPOSE_OF_SCHEMA",
    "CallInfo",
    "CallRecord",
    "SimState",
    "media",
    "read_call",
    "watched_in",
]

# The structured-output schema names tierd sends, for clients that send no X-Tierd-Purpose.
PURPOSE_OF_SCHEMA = {
    "Plan": "plan",
    "ExecutorReply": "execute",
    "Review": "review",
    "ConflictReport": "conflicts",
}
#: HTTP status recorded for a call whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499
#: HTTP status recorded for a call whose connection the simulator dropped without an answer
#: (kind "reset"; nginx's "no response" convention).
NO_RESPONSE = 444
#: Characters of each new tool result kept in a call's record.
RESULT_CHARS = 2000
#: Tokens one image counts. OpenAI prices an image by its 512-pixel tiles at detail "high"
#: (85 + 170 per tile); 765 is a 1024x1024 image, a typical page or photo after the provider's
#: own resizing. A fixed figure: the simulator does not decode images, and what a test needs
#: is that image tokens are counted (and reach the report) like any others.
IMAGE_TOKENS = 765
#: A document part (a file) counts its decoded bytes at this many per token, as text does
#: (about four characters per token): providers turn a document into its text (and images).
DOCUMENT_BYTES_PER_TOKEN = 4


@dataclass
class CallInfo:
    """What one request is asking, read from its headers and body."""

    role: str
    purpose: str
    task_id: str
    stream_id: str | None
    round: int
    model: str
    streaming: bool
    include_usage: bool
    prompt: str
    schema_name: str | None
    #: The memo key of the step the call is for (`X-Tierd-Step`; None when not sent).
    step: str | None = None
    #: The names of the tools the request offers (None: no `tools`).
    tools: list[str] | None = None
    #: Where a code script stands: the model's answers in the conversation so far (one
    #: whose tool-call arguments were not JSON does not count: the model tries it again).
    code_step: int = 0
    #: Tool-result messages in the request, and the contents of those after the last answer.
    tool_results: int = 0
    new_results: list[str] = field(default_factory=list)
    #: Image and document content parts in the request, and the tokens they count.
    images: int = 0
    documents: int = 0
    image_digests: list[str] = field(default_factory=list)
    media_tokens: int = 0
    #: What comes before the messages in a provider's prompt cache: the tools offered and
    #: the structured-output schema asked for (JSON; "" when neither).
    preamble: str = ""


@dataclass
class CallRecord:
    """One call in the log; `status` stays None while it is in flight."""

    seq: int
    task_id: str
    stream_id: str | None
    role: str
    purpose: str
    model: str
    round: int
    streaming: bool
    started_mono: float
    started_wall: float
    ended_mono: float | None = None
    ended_wall: float | None = None
    status: int | None = None
    disconnected: bool = False
    injected: str | None = None
    #: The json_schema name of a structured-output request (None: plain request).
    schema: str | None = None
    #: The memo key of the step the call is for (`X-Tierd-Step`), None when not sent.
    step: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: The tools offered (None: a call without tools) and the script step answered.
    tools: list[str] | None = None
    code_step: int | None = None
    #: The names of the tool calls answered, in order (None: no tool-call answer).
    tool_calls: list[str] | None = None
    #: Tool-result messages the request carried; the contents of the new ones (cut short).
    tool_results: int = 0
    new_results: list[str] = field(default_factory=list)
    #: The scenario's `watch` strings found in the request body.
    watched: list[str] = field(default_factory=list)
    #: Image and document content parts received; each image's digest (the first 16 hex
    #: digits of the sha256 of its bytes, or of its URL when it is not a data URL); the
    #: tokens they counted (part of prompt_tokens).
    images: int = 0
    documents: int = 0
    image_digests: list[str] = field(default_factory=list)
    media_tokens: int = 0
    #: The prompt tokens an earlier call's prefix covered (`prompt_cache`; part of
    #: prompt_tokens, as OpenAI reports `prompt_tokens_details.cached_tokens`).
    cached_tokens: int = 0

    def finish(self, status: int, disconnected: bool = False) -> None:
        """The call ended with `status` (CLIENT_CLOSED when its client left first)."""
        self.ended_mono, self.ended_wall = time.monotonic(), time.time()
        self.status, self.disconnected = status, disconnected


@dataclass
class SimState:
    """The simulator's mutable state: the scenario, counters and the call records."""

    scenario: Scenario
    scale: float
    records: list[CallRecord] = field(default_factory=list)
    rule_hits: Counter[int] = field(default_factory=Counter)
    repeats: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    splits_done: set[tuple[str, str]] = field(default_factory=set)
    prompt_cache: PromptCache = field(default_factory=PromptCache)

    def reset(self) -> None:
        self.records.clear()
        self.prompt_cache.clear()
        self.rule_hits.clear()
        self.repeats.clear()
        self.splits_done.clear()

    def record(self, call: CallInfo) -> CallRecord:
        """Log a call that starts now."""
        rec = CallRecord(
            seq=len(self.records) + 1,
            task_id=call.task_id,
            stream_id=call.stream_id,
            role=call.role,
            purpose=call.purpose,
            model=call.model,
            round=call.round,
            streaming=call.streaming,
            schema=call.schema_name,
            step=call.step,
            tools=call.tools,
            code_step=call.code_step if call.tools is not None else None,
            tool_results=call.tool_results,
            new_results=list(call.new_results),
            images=call.images,
            documents=call.documents,
            image_digests=list(call.image_digests),
            media_tokens=call.media_tokens,
            started_mono=time.monotonic(),
            started_wall=time.time(),
        )
        self.records.append(rec)
        return rec

    def _count(self, key: Callable[[CallRecord], Any], only_ok: bool = False) -> dict[str, int]:
        c: Counter[str] = Counter()
        for r in self.records:
            if not only_ok or r.status == 200:
                c[str(key(r))] += 1
        return dict(sorted(c.items()))

    def stats(self) -> dict[str, Any]:
        def stream_key(r: CallRecord) -> str:
            return f"{r.task_id}/{r.stream_id or '-'}"

        count = self._count
        return {
            "scenario": self.scenario.name,
            "scale": self.scale,
            "total": len(self.records),
            "answered": sum(1 for r in self.records if r.status == 200),
            "in_flight": sum(1 for r in self.records if r.status is None),
            "disconnected": sum(1 for r in self.records if r.disconnected),
            "by_role": count(lambda r: r.role),
            "by_purpose": count(lambda r: r.purpose),
            "by_model": count(lambda r: r.model),
            "by_status": count(lambda r: r.status),
            "by_stream": count(stream_key),
            "answered_by_role": count(lambda r: r.role, True),
            "answered_by_purpose": count(lambda r: r.purpose, True),
            "answered_by_stream": count(stream_key, True),
            "watched": {w: sum(w in r.watched for r in self.records) for w in self.scenario.watch},
            "images": sum(r.images for r in self.records),
            "documents": sum(r.documents for r in self.records),
            "prompt_tokens": sum(r.prompt_tokens for r in self.records),
            "cached_tokens": sum(r.cached_tokens for r in self.records),
            "calls": [vars(r) for r in self.records],
        }


def _prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            parts.extend(
                str(p.get("text", ""))
                for p in content
                if isinstance(p, dict) and p.get("type", "text") == "text"
            )
    return "\n".join(parts)


def _data_url_bytes(url: str) -> bytes | None:
    """The bytes of a base64 data URL (`data:image/png;base64,...`); None for anything else."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


def _parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found.extend(p for p in content if isinstance(p, dict))
    return found


def media(body: dict[str, Any]) -> tuple[int, int, list[str], int]:
    """The images and documents among the request's content parts: their counts, each
    image's digest, and the tokens they count."""
    images = documents = tokens = 0
    digests: list[str] = []
    for part in _parts(body):
        if part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            url = url if isinstance(url, str) else ""
            data = _data_url_bytes(url)
            digests.append(hashlib.sha256(url.encode() if data is None else data).hexdigest()[:16])
            images += 1
            tokens += IMAGE_TOKENS
        elif part.get("type") == "file":
            file = part.get("file")
            payload = file.get("file_data") if isinstance(file, dict) else None
            data = _data_url_bytes(payload if isinstance(payload, str) else "") or b""
            documents += 1
            tokens += max(1, math.ceil(len(data) / DOCUMENT_BYTES_PER_TOKEN))
    return images, documents, digests, tokens


def _valid_arguments(message: dict[str, Any]) -> bool:
    """Whether every tool call of an assistant message has JSON object arguments."""
    for raw in message.get("tool_calls") or []:
        function = raw.get("function") if isinstance(raw, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments.strip():
            try:
                json.loads(arguments)
            except ValueError:
                return False
    return True


def _conversation(messages: list[Any]) -> tuple[int, int, list[str]]:
    """The code script's step (see `CallInfo.code_step`), the number of tool results, and
    the contents of those after the model's last answer."""
    step = results = 0
    new: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            step += _valid_arguments(message)
            new = []
        elif message.get("role") == "tool":
            results += 1
            content = message.get("content")
            new.append(content[:RESULT_CHARS] if isinstance(content, str) else str(content))
    return step, results, new


def _tool_names(body: dict[str, Any]) -> list[str] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            names.append(str(function.get("name")))
    return names


def _preamble(body: dict[str, Any]) -> str:
    """The request's tools and response schema as one canonical JSON text ("" for none)."""
    parts = {k: body[k] for k in ("tools", "response_format") if body.get(k)}
    return json.dumps(parts, sort_keys=True, separators=(",", ":")) if parts else ""


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def watched_in(raw: str, body: dict[str, Any], watch: list[str]) -> list[str]:
    """The `watch` strings the request carries: in the raw body, or in any string of the
    parsed one (JSON escapes could hide one from the raw text)."""
    if not watch:
        return []
    strings = _strings(body)
    return [w for w in watch if w in raw or any(w in s for s in strings)]


def read_call(request: Request, body: dict[str, Any]) -> CallInfo:
    """What a chat-completions request asks, from tierd's X-Tierd-* headers and the body."""
    h = request.headers
    schema_name = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
        schema_name = fmt["json_schema"].get("name")
    purpose = (
        h.get("x-tierd-purpose")
        or PURPOSE_OF_SCHEMA.get(schema_name or "")
        or {"planner": "plan", "executor": "execute"}.get(h.get("x-tierd-role", ""))
        or "chat"
    )
    role = h.get("x-tierd-role") or ROLE_OF_PURPOSE.get(purpose, "executor")
    try:
        round_ = int(h.get("x-tierd-round", "0"))
    except ValueError:
        round_ = 0
    options = body.get("stream_options") or {}
    code_step, tool_results, new_results = _conversation(body.get("messages") or [])
    images, documents, digests, media_tokens = media(body)
    return CallInfo(
        role=role,
        purpose=purpose,
        task_id=h.get("x-tierd-task", "-"),
        stream_id=h.get("x-tierd-stream") or None,
        round=round_,
        model=str(body.get("model") or "sim"),
        streaming=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
        prompt=_prompt_text(body),
        schema_name=schema_name,
        step=h.get("x-tierd-step") or None,
        tools=_tool_names(body),
        code_step=code_step,
        tool_results=tool_results,
        new_results=new_results,
        images=images,
        documents=documents,
        image_digests=digests,
        media_tokens=media_tokens,
        preamble=_preamble(body),
    )
