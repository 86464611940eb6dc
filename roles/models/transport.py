"""One answer from a tier: the litellm call with its deadline, retries and fallbacks.

A small loop of our own rather than litellm's num_retries/fallbacks or its Router: every
attempt must yield its own `UsageRecord` (model, latency, error) for the report, the Router
wants deployments configured up front while tiers come from per-task config, and the delays
must honour Retry-After exactly. litellm is still used for the call itself, the exception
mapping and the price table.

Nothing waits without a bound: each attempt is cut at 1.5 x timeout_s + 1 s whatever the HTTP
client does, a wait between attempts is at most MAX_RETRY_AFTER_S, and the attempts are finite
((max_retries + 1) per model).

A tier with `stream = true` asks for the answer as server-sent chunks and assembles them with
`litellm.stream_chunk_builder` (text and tool calls alike); the usage comes from the final
chunk (`stream_options.include_usage`). The guard covers the whole stream, and a stream that
ends without a finish reason (cut on the way) is retried like an empty answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from roles.models import environment
from roles.models.client import litellm
from roles.models.costs import cost_of
from roles.models.errors import ModelCallError, ModelConfigError
from roles.models.prompt_cache import mark_prefix
from roles.models.routing import litellm_provider, provider_of
from roles.models.structured import response_format, schema_instruction
from roles.models.tier import NO_KEY, ModelTier
from roles.models.toolcalls import ToolCall, tool_calls_of
from roles.models.usage import OnRecord, TokenCounts, UsageRecord, emit

__all__ = [
    "LOGGED_ERROR_CHARS",
    "MAX_BACKOFF_S",
    "MAX_RETRY_AFTER_S",
    "Attempts",
    "Reply",
    "complete",
    "one_line",
]

log = logging.getLogger("tierd.models")

#: Longest Retry-After honoured by waiting; a longer one moves on to the next model instead.
MAX_RETRY_AFTER_S = 60.0
#: Ceiling of the exponential backoff between two attempts on one model.
MAX_BACKOFF_S = 30.0
#: Longest cause quoted in a log line (the record keeps up to 1000 characters).
LOGGED_ERROR_CHARS = 300


class EmptyAnswerError(RuntimeError):
    """The server said 200 but sent no answer (no content, no tool call, or a stream that
    stopped before its end): a provider fault, retried like a 500.

    Not a repair case: there is nothing to quote back to the model.
    """


# --- which failures are worth another attempt -----------------------------------------------


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retryable(exc: BaseException) -> bool:
    if isinstance(
        exc, TimeoutError | EmptyAnswerError | litellm.Timeout | litellm.APIConnectionError
    ):
        return True
    status = _status(exc)
    return status is not None and (status in (408, 409, 429) or status >= 500)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if it did."""
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if not headers:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain: litellm's message ("Connection error.") hides
    whether the port was closed, the connection reset or the body cut."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _clean_error(exc: BaseException, secret: str | None) -> str:
    if isinstance(exc, TimeoutError):  # our guard (litellm's own is litellm.Timeout)
        message = "TimeoutError: no complete answer within the guard time"
    else:
        message = f"{type(exc).__name__}: {exc}"
        root = _root_cause(exc)
        if root is not exc and str(root) and str(root) not in message:
            message += f" (cause: {type(root).__name__}: {root})"
    if secret and secret != NO_KEY:
        message = message.replace(secret, "***")
    return message[:1000]


def one_line(text: str, limit: int) -> str:
    """`text` on one log line (provider messages hold newlines), at most `limit` characters."""
    return " ".join(text.split())[:limit]


# --- one call ---------------------------------------------------------------------------------


def _provider_args(model: str, api_base: str | None) -> dict[str, Any]:
    if api_base and litellm_provider(model) is None:
        # A bare name ("llama3") on an OpenAI-compatible server (Ollama, vLLM, simulator).
        return {"custom_llm_provider": "openai"}
    return {}


def _same_server(model: str, api_base: str | None, tier: ModelTier) -> bool:
    """Whether `model` at `api_base` is served where the tier's own model is: the tier's key
    may go there. Without an api_base, each provider's own server: the same provider."""
    if api_base != tier.api_base:
        return False
    return api_base is not None or provider_of(model, None) == provider_of(tier.model, None)


@functools.lru_cache(maxsize=256)
def _supports_schema(model: str) -> bool:
    """Whether litellm knows `model` to accept a JSON schema as `response_format`.

    Kept per model: litellm looks it up in its table each time (~0.1 ms, most of a
    structured call's set-up), and its table does not change while the daemon runs.
    """
    try:
        return bool(litellm.supports_response_schema(model=model))
    except Exception:  # unknown model: instruct in the prompt instead
        return False


@dataclass
class Reply:
    """What one answer said: its text (may be empty beside tool calls) and its tool calls."""

    text: str
    tool_calls: list[ToolCall]

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.tool_calls


def _reply_and_usage(response: Any) -> tuple[Reply, TokenCounts]:
    """The answer, and its tokens: prompt and completion, and the prompt tokens the
    provider's prompt cache served or stored (priced apart: `costs.cost_of`)."""
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = getattr(message, "content", None) or ""
    return Reply(text, tool_calls_of(message)), TokenCounts.of(getattr(response, "usage", None))


def _token_fields(tokens: TokenCounts, model: str) -> dict[str, Any]:
    """A record's token fields and its cost, cached input at the cached rate."""
    return {
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.completion,
        "cached_tokens": tokens.cached,
        "cost_usd": cost_of(
            tokens.prompt, tokens.completion, model, tokens.cached, tokens.cache_write
        ),
    }


def _finished(stream: Any, chunks: list[Any]) -> bool:
    """Whether the server ended the stream with a finish reason.

    litellm's stream wrapper adds a "stop" chunk of its own to a stream cut short, so the
    chunks cannot tell; the wrapper keeps the reason the server sent apart.
    """
    if hasattr(stream, "received_finish_reason"):
        return bool(
            stream.received_finish_reason or getattr(stream, "intermittent_finish_reason", None)
        )
    return any(
        getattr(choice, "finish_reason", None)
        for chunk in chunks
        for choice in getattr(chunk, "choices", None) or []
    )


async def _answer(kwargs: dict[str, Any], model: str) -> Any:
    """litellm's answer to one request: the response, or, streamed, the chunks assembled."""
    response = await litellm.acompletion(**kwargs)
    if not kwargs.get("stream"):
        return response
    chunks: list[Any] = []
    try:
        async for chunk in response:
            chunks.append(chunk)
    finally:
        # Closing the stream closes its connection (also when cancelled mid-stream).
        close = getattr(response, "aclose", None)
        if close is not None:
            await close()
    if not _finished(response, chunks):
        raise EmptyAnswerError(f"{model}: the answer's stream ended before its finish")
    return litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])


async def _ask(kwargs: dict[str, Any], model: str, limit_s: float) -> Any:
    """`_answer` within `limit_s`, run as a task of its own in an empty context.

    The event loop keeps, with each socket and each timer, the context that was current when
    it was made, and a connection stays in litellm's pool after the call. In the caller's
    context that is LangGraph's config of the step (its scratchpad, runtime, the stream's
    inputs): a pooled connection would keep a finished step alive for as long as it stays open
    (~1,000 steps after 1,000 streams), the guard's cancelled timer until its deadline.
    Cancelling the caller cancels this task, and with it the request.
    """

    async def guarded() -> Any:
        # A guard over the HTTP client's own timeout (which bounds each read, not the
        # whole exchange): a slowly trickling answer cannot hang a stream forever.
        async with asyncio.timeout(limit_s):
            return await _answer(kwargs, model)

    return await asyncio.get_running_loop().create_task(guarded(), context=contextvars.Context())


@dataclass
class Attempts:
    """The fixed parts of one `call_model` invocation, shared by its attempts, and their count."""

    tier: ModelTier
    role: str
    purpose: str
    task_id: str
    stream_id: str | None
    round: int
    on_record: OnRecord | None
    headers: dict[str, str]
    attempts: int = 0
    last_error: str = "no attempt made"

    def record(self, model: str, started: float, wall: float, **kw: Any) -> UsageRecord:
        return UsageRecord(
            task_id=self.task_id,
            stream_id=self.stream_id,
            role=self.role,
            purpose=self.purpose,
            model=model,
            attempts=self.attempts,
            latency_s=time.monotonic() - started,
            started_at=wall,
            ended_at=time.time(),
            round=self.round,
            **kw,
        )

    def request(
        self,
        model: str,
        api_base: str | None,
        key: str | None,
        messages: list[dict[str, Any]],
        response_model: type[BaseModel] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """litellm's arguments for one endpoint of the tier."""
        # What the environment holds for this provider, only for its own endpoint (no
        # api_base of the config's): nothing from it reaches another server.
        scoped = environment.for_endpoint(provider_of(model, api_base), api_base)
        kwargs: dict[str, Any] = {
            "model": model,
            # The end of a premium prompt's stable prefix, marked for Anthropic's cache.
            "messages": mark_prefix(messages, model, api_base),
            "timeout": self.tier.timeout_s,
            # Retries happen here, once, with a record each: none inside litellm or openai.
            "num_retries": 0,
            "max_retries": 0,
            **scoped,
            "extra_headers": {**scoped.get("extra_headers", {}), **self.headers},
            **_provider_args(model, api_base),
        }
        if api_base:
            kwargs["api_base"] = api_base
        if key is not None and _same_server(model, api_base, self.tier):
            kwargs["api_key"] = key
        elif api_base:
            # A keyless local server, or a fallback on a server of its own ("model@url"):
            # the tier's key belongs to the tier's provider and never goes to another host.
            kwargs["api_key"] = NO_KEY
        if response_model is not None and _supports_schema(model):
            kwargs["response_format"] = response_format(response_model)
        elif response_model is not None:
            kwargs["messages"] = [*kwargs["messages"], schema_instruction(response_model)]
        if tools:
            # tool_choice stays the provider's default ("auto"): text or tool calls.
            kwargs["tools"] = tools
        if self.tier.stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    def next_wait(self, exc: BaseException, retry: int, model: str) -> float | None:
        """Seconds to wait before the next attempt on `model`; None: move on to the next."""
        if not _retryable(exc) or retry >= self.tier.max_retries:
            self.log_failure(model, "moving on to the next model, if any")
            return None
        wait = _retry_after(exc)
        if wait is not None and wait > MAX_RETRY_AFTER_S:
            self.log_failure(model, f"asked to wait {wait:.0f}s: trying the next model, if any")
            return None
        if wait is None:
            wait = min(MAX_BACKOFF_S, self.tier.backoff_s * 2**retry)
        self.log_failure(model, f"retrying in {wait:.1f}s")
        return wait

    def log_failure(self, model: str, then: str) -> None:
        """One line in the daemon's log for a failed attempt: who asked, which model, which
        attempt, why (`last_error`, already cleaned of the key) and what happens next. Never
        the key, never the prompt."""
        log.warning(
            "model call failed: role=%s purpose=%s task=%s stream=%s model=%s attempt=%d: %s; %s",
            self.role,
            self.purpose,
            self.task_id,
            self.stream_id or "-",
            model,
            self.attempts,
            one_line(self.last_error, LOGGED_ERROR_CHARS),
            then,
        )


async def _on_endpoint(
    c: Attempts, model: str, kwargs: dict[str, Any], key: str | None
) -> tuple[Reply, UsageRecord] | None:
    """Up to max_retries + 1 attempts on one model; None when it gave up (see c.last_error)."""
    for retry in range(c.tier.max_retries + 1):
        c.attempts += 1
        started, wall = time.monotonic(), time.time()
        tokens = TokenCounts()
        try:
            response = await _ask(kwargs, model, c.tier.timeout_s * 1.5 + 1)
            reply, tokens = _reply_and_usage(response)
            if reply.empty:
                raise EmptyAnswerError(f"{model} answered 200 with empty content")
        except asyncio.CancelledError:
            # Cancelling the awaiting task cancelled the request: httpx closed the
            # connection, so the provider sees the client go away and stops the work.
            await emit(
                c.on_record, c.record(model, started, wall, outcome="error", error="cancelled")
            )
            raise
        except Exception as exc:
            c.last_error = _clean_error(exc, key)
            # An empty answer was still billed: its tokens are kept in the record.
            failed = c.record(
                model,
                started,
                wall,
                outcome="error",
                error=c.last_error,
                **_token_fields(tokens, model),
            )
            await emit(c.on_record, failed)
            wait = c.next_wait(exc, retry, model)
            if wait is None:
                return None
            # Jitter only ever adds, so a Retry-After is never undercut.
            await asyncio.sleep(wait * (1 + random.random() * 0.1))
            continue
        return reply, c.record(
            model,
            started,
            wall,
            outcome="ok",
            **_token_fields(tokens, model),
        )
    return None


async def complete(
    c: Attempts,
    messages: list[dict[str, Any]],
    response_model: type[BaseModel] | None,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[Reply, UsageRecord]:
    """One answer from the tier: retries with backoff, then the fallbacks in order.

    The returned record (the answering attempt) is not emitted yet: the caller first decides
    whether the answer is usable. Raises ModelCallError when no model answered, and
    ModelConfigError when the tier's key variable is not set.
    """
    try:
        key = c.tier.api_key()
    except ModelConfigError as exc:
        raise ModelConfigError(
            f"{c.role}/{c.purpose}: {exc}", role=c.role, model=c.tier.model
        ) from exc
    tried: list[str] = []
    for model, api_base in c.tier.endpoints():
        tried.append(model)
        kwargs = c.request(model, api_base, key, messages, response_model, tools)
        answered = await _on_endpoint(c, model, kwargs, key)
        if answered is not None:
            return answered
    raise ModelCallError(
        f"{c.role}/{c.purpose}: every attempt failed on "
        f"{', '.join(tried)} ({c.attempts} attempt{'' if c.attempts == 1 else 's'}); "
        f"last error: {c.last_error}",
        role=c.role,
        model=c.tier.model,
    )
