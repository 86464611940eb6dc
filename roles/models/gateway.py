"""Model tiers and the one function that calls a model: `call_model`.

Every model call in tierd goes through here, so this is where timeouts, retries, fallbacks,
structured output, usage and cost are handled once. A `ModelTier` names a litellm model, where
it is served (`api_base`) and the NAME of the environment variable holding its key; the key is
read at call time and never stored, logged or put in a record or an error message.

Each attempt (a retry, a fallback model, a repair request) produces a `CallRecord`, handed to
`on_record` as soon as it is known: failed attempts cost time and sometimes money, and the
report shows them. Cost comes from litellm's bundled price table; litellm must never fetch it
from the network, hence LITELLM_LOCAL_MODEL_COST_MAP is set before litellm is imported.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is imported: set it first.
import litellm
from pydantic import BaseModel, ValidationError

litellm.suppress_debug_info = True
# No usage pings to litellm's servers from a local daemon.
litellm.telemetry = False

__all__ = [
    "CallRecord",
    "ModelCallError",
    "ModelConfigError",
    "ModelOutputError",
    "ModelResult",
    "ModelTier",
    "call_model",
    "extract_json",
    "premium_cost",
]

log = logging.getLogger("tierd.models")

#: Longest Retry-After honoured by waiting; a longer one moves on to the next model instead.
MAX_RETRY_AFTER_S = 60.0
#: Ceiling of the exponential backoff between two attempts on one model.
MAX_BACKOFF_S = 30.0
#: How many times a structured answer that does not parse is sent back to the model.
DEFAULT_REPAIRS = 2
#: Longest piece of an invalid answer quoted back to the model in a repair request.
REPAIR_QUOTE_CHARS = 4000
#: A key is sent to OpenAI-compatible servers that need none (the openai client insists on one).
NO_KEY = "tierd-no-key"

OnRecord = Callable[["CallRecord"], Awaitable[None] | None]
# "model@http://host/v1": a fallback served elsewhere. Model names may hold "@" themselves
# (Vertex AI's "claude-3-5-sonnet@20240620"), so only "@" before a URL scheme counts.
_AT_URL_RE = re.compile(r"(.+?)@(https?://\S+)")


class ModelConfigError(ValueError):
    """A model tier is configured wrongly; the message names the key."""


class ModelCallError(RuntimeError):
    """Every attempt on every model of a tier failed."""


class EmptyAnswerError(RuntimeError):
    """The server said 200 but sent no content: a provider fault, retried like a 500.

    Not a repair case: there is nothing to quote back to the model.
    """


class ModelOutputError(ValueError):
    """The model's answer never parsed as the requested structure, even after repair requests.

    A ValueError, so a caller that treats "not a valid plan" as a retryable planner problem
    (roles/planner.py) handles it without knowing this module.
    """

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


@dataclass
class ModelTier:
    """One role's model: a litellm model name, where it is served, fallbacks and limits.

    `fallbacks` are litellm model names tried in order once the main model has used its
    retries; they are served from the same `api_base` with the same key, unless a name ends
    in `@` and an http(s) URL: `"openai/gpt-5-mini@http://127.0.0.1:11434/v1"` is served
    there (a second server when the first one is down).
    """

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    timeout_s: float = 120.0
    max_retries: int = 3
    #: First delay of the exponential backoff between retries (doubles each time).
    backoff_s: float = 0.5

    _KEYS = (
        "model",
        "api_base",
        "api_key_env",
        "fallbacks",
        "timeout_s",
        "max_retries",
        "backoff_s",
    )

    @classmethod
    def from_config(cls, data: Mapping[str, Any], *, where: str = "") -> ModelTier:
        """A tier from a config table, e.g. the keys of `[models.executor]`.

        `where` prefixes key names in error messages ("models.executor."). Empty strings
        mean "not set" for api_base and api_key_env, as in config/default.toml.
        """
        unknown = sorted(set(data) - set(cls._KEYS))
        if unknown:
            raise ModelConfigError(
                f"unknown key {where}{unknown[0]} (known: {', '.join(cls._KEYS)})"
            )

        def text(key: str, required: bool = False) -> str | None:
            value = data.get(key)
            if value is None or value == "":
                if required:
                    raise ModelConfigError(
                        f"{where}{key} is required: a litellm model name, e.g. 'openai/gpt-5-mini'"
                    )
                return None
            if not isinstance(value, str) or not value.strip():
                raise ModelConfigError(f"{where}{key} must be a non-empty string, not {value!r}")
            return value.strip()

        def number(key: str, default: float, low: float, integer: bool = False) -> Any:
            value = data.get(key, default)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if integer:
                ok = ok and float(value).is_integer()
            if not ok or value < low or (isinstance(value, float) and math.isnan(value)):
                kind = "an integer" if integer else "a number"
                raise ModelConfigError(f"{where}{key} must be {kind} >= {low}, not {value!r}")
            return int(value) if integer else float(value)

        fallbacks = data.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(
            isinstance(f, str) and f.strip() for f in fallbacks
        ):
            raise ModelConfigError(
                f"{where}fallbacks must be a list of model names, not {fallbacks!r}"
            )
        timeout = number("timeout_s", 120.0, 0.001)
        return cls(
            model=text("model", required=True) or "",
            api_base=text("api_base"),
            api_key_env=text("api_key_env"),
            fallbacks=[f.strip() for f in fallbacks],
            timeout_s=timeout,
            max_retries=number("max_retries", 3, 0, integer=True),
            backoff_s=number("backoff_s", 0.5, 0.0),
        )

    def endpoints(self) -> list[tuple[str, str | None]]:
        """(model, api_base) of the main model, then of each fallback, in the order tried."""
        found = [(self.model, self.api_base)]
        for name in self.fallbacks:
            match = _AT_URL_RE.fullmatch(name)
            found.append((match[1], match[2]) if match else (name, self.api_base))
        return found

    def api_key(self) -> str | None:
        """The key from the environment; None lets litellm find the provider's default."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ModelConfigError(
                    f"the environment variable {self.api_key_env} (api_key_env of model "
                    f"{self.model}) is not set"
                )
            return key
        return NO_KEY if self.api_base else None


@dataclass
class CallRecord:
    """One attempt at a model call: who asked, which model answered, tokens, cost, time."""

    task_id: str
    stream_id: str | None
    role: str
    purpose: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    outcome: str = "ok"  # "ok" | "error"
    #: Which attempt of this call this was (1-based, across retries, fallbacks and repairs).
    attempts: int = 1
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    round: int = 0


@dataclass
class ModelResult:
    text: str
    parsed: BaseModel | None
    #: The record of the attempt that produced `text`.
    record: CallRecord


def premium_cost(prompt_tokens: int, completion_tokens: int, model: str) -> float:
    """What these tokens cost on `model` by litellm's price table; 0.0 if it is not listed."""
    if not model or (prompt_tokens <= 0 and completion_tokens <= 0):
        return 0.0
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models missing from its table
        return 0.0
    return float(prompt_cost) + float(completion_cost)


# --- structured output ------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.S)


def _json_candidates(text: str) -> tuple[str | None, list[Any]]:
    """The JSON values an answer may hold, most likely first, and why the whole text (or its
    fenced block) is not JSON, if it is not."""
    stripped = text.strip()
    values: list[Any] = []
    decode_error: str | None = None
    for candidate in [stripped, *(m.strip() for m in _FENCE_RE.findall(stripped))]:
        try:
            values.append(json.loads(candidate))
        except ValueError as exc:
            decode_error = decode_error or f"the answer is not valid JSON ({exc})"
    if values:
        return None, values
    # Prose around the object: every complete object that starts at a "{", outermost first.
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            values.append(value)
    return decode_error, values


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer: the whole text, a fenced block, or the first
    complete object inside surrounding prose. Raises ValueError if there is none."""
    decode_error, values = _json_candidates(text)
    if not values:
        raise ValueError(decode_error or "no JSON object found in the answer")
    return values[0]


def _validation_message(exc: ValidationError) -> str:
    # The plain message lists each bad field; the documentation links add nothing.
    return re.sub(r"\n\s+For further information visit \S+", "", str(exc))[:2000]


def _parse(text: str, response_model: type[BaseModel]) -> BaseModel:
    """Parse `text` as `response_model`; raise ValueError saying what is wrong."""
    decode_error, values = _json_candidates(text)
    first_problem: str | None = None
    for value in values:
        try:
            return response_model.model_validate(value)
        except ValidationError as exc:
            first_problem = first_problem or _validation_message(exc)
    if decode_error is not None:
        # A fragment inside a broken answer (one stream of a truncated plan) is not the
        # answer: report the broken JSON, which is what the model must fix.
        raise ValueError(decode_error)
    raise ValueError(first_problem or "no JSON object found in the answer")


def _supports_schema(model: str) -> bool:
    try:
        return bool(litellm.supports_response_schema(model=model))
    except Exception:  # unknown model: instruct in the prompt instead
        return False


def _response_format(response_model: type[BaseModel]) -> dict[str, Any]:
    # Not strict: OpenAI's strict mode needs every field required and no defaults, which
    # the schemas (deliberately lenient towards models) do not satisfy.
    return {
        "type": "json_schema",
        "json_schema": {
            "name": response_model.__name__,
            "schema": response_model.model_json_schema(),
            "strict": False,
        },
    }


def _schema_instruction(response_model: type[BaseModel]) -> dict[str, str]:
    schema = json.dumps(response_model.model_json_schema(), separators=(",", ":"))
    return {
        "role": "system",
        "content": f"Answer with one JSON object of type {response_model.__name__} and "
        f"nothing else (no prose, no code fences). Its JSON schema: {schema}",
    }


# --- errors and retries -----------------------------------------------------------------------


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


async def _emit(on_record: OnRecord | None, record: CallRecord) -> None:
    if on_record is None:
        return
    try:
        result = on_record(record)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # A failing recorder must not turn a good answer into a failed call; it is logged.
        log.exception("on_record failed for a %s/%s call", record.role, record.purpose)


def _provider_args(model: str, api_base: str | None) -> dict[str, Any]:
    if not api_base:
        return {}
    try:
        litellm.get_llm_provider(model)
    except Exception:
        # A bare name ("llama3") on an OpenAI-compatible server (Ollama, vLLM, simulator).
        return {"custom_llm_provider": "openai"}
    return {}


@dataclass
class _Call:
    """The fixed parts of one `call_model` invocation, shared by its attempts."""

    tier: ModelTier
    role: str
    purpose: str
    task_id: str
    stream_id: str | None
    round: int
    on_record: OnRecord | None
    headers: dict[str, str]
    attempts: int = 0

    def record(self, model: str, started: float, wall: float, **kw: Any) -> CallRecord:
        return CallRecord(
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


async def _complete(
    c: _Call, messages: list[dict[str, Any]], response_model: type[BaseModel] | None
) -> tuple[str, CallRecord]:
    """One answer from the tier: retries with backoff, then the fallbacks in order.

    A small loop of our own rather than litellm's num_retries/fallbacks or its Router: every
    attempt must yield its own CallRecord (model, latency, error) for the report, the Router
    wants deployments configured up front while tiers come from per-task config, and the
    delays must honour Retry-After exactly. litellm is still used for the call itself, the
    exception mapping and the price table. The returned record (the answering attempt) is not
    emitted yet: the caller first decides whether the text is usable.
    """
    tier = c.tier
    key = tier.api_key()
    last_error = "no attempt made"
    tried: list[str] = []
    for model, api_base in tier.endpoints():
        tried.append(model)
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "timeout": tier.timeout_s,
            # Retries happen here, once, with a record each: none inside litellm or openai.
            "num_retries": 0,
            "max_retries": 0,
            "extra_headers": c.headers,
            **_provider_args(model, api_base),
        }
        if api_base:
            kwargs["api_base"] = api_base
        if key is not None and api_base == tier.api_base:
            kwargs["api_key"] = key
        elif api_base:
            # A keyless local server, or a fallback on a server of its own ("model@url"):
            # the tier's key belongs to the tier's provider and never goes to another host.
            kwargs["api_key"] = NO_KEY
        if response_model is not None and _supports_schema(model):
            kwargs["response_format"] = _response_format(response_model)
        elif response_model is not None:
            kwargs["messages"] = [*messages, _schema_instruction(response_model)]
        for retry in range(tier.max_retries + 1):
            c.attempts += 1
            started, wall = time.monotonic(), time.time()
            prompt_tokens = completion_tokens = 0
            try:
                # A guard over the HTTP client's own timeout (which bounds each read, not the
                # whole exchange): a slowly trickling answer cannot hang a stream forever.
                async with asyncio.timeout(tier.timeout_s * 1.5 + 1):
                    response = await litellm.acompletion(**kwargs)
                text, prompt_tokens, completion_tokens = _content_and_usage(response)
                if not text.strip():
                    raise EmptyAnswerError(f"{model} answered 200 with empty content")
            except asyncio.CancelledError:
                # Cancelling the awaiting task cancelled the request: httpx closed the
                # connection, so the provider sees the client go away and stops the work.
                await _emit(
                    c.on_record, c.record(model, started, wall, outcome="error", error="cancelled")
                )
                raise
            except Exception as exc:
                last_error = _clean_error(exc, key)
                # An empty answer was still billed: its tokens are kept in the record.
                failed = c.record(
                    model,
                    started,
                    wall,
                    outcome="error",
                    error=last_error,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cost_usd=premium_cost(prompt_tokens, completion_tokens, model),
                )
                await _emit(c.on_record, failed)
                if not _retryable(exc) or retry >= tier.max_retries:
                    log.info(
                        "%s/%s: %s failed (%s), moving on", c.role, c.purpose, model, last_error
                    )
                    break
                wait = _retry_after(exc)
                if wait is not None and wait > MAX_RETRY_AFTER_S:
                    log.info("%s asks to wait %.0fs: trying the next model", model, wait)
                    break
                if wait is None:
                    wait = min(MAX_BACKOFF_S, tier.backoff_s * 2**retry)
                # Jitter only ever adds, so a Retry-After is never undercut.
                await asyncio.sleep(wait * (1 + random.random() * 0.1))
                continue
            return text, c.record(
                model,
                started,
                wall,
                outcome="ok",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=premium_cost(prompt_tokens, completion_tokens, model),
            )
    raise ModelCallError(
        f"{c.role}/{c.purpose}: every attempt failed on "
        f"{', '.join(tried)} ({c.attempts} attempts); last error: {last_error}"
    )


def _content_and_usage(response: Any) -> tuple[str, int, int]:
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = getattr(message, "content", None) or ""
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    return text, prompt, completion


async def call_model(
    tier: ModelTier,
    messages: list[dict[str, Any]],
    *,
    role: str,
    purpose: str,
    task_id: str,
    stream_id: str | None = None,
    round: int = 0,
    response_model: type[BaseModel] | None = None,
    on_record: OnRecord | None = None,
    repairs: int = DEFAULT_REPAIRS,
) -> ModelResult:
    """Ask `tier` for an answer to `messages`; parse it as `response_model` if given.

    Retries (exponential backoff, Retry-After honoured), then fallback models, then, for an
    answer that does not parse, up to `repairs` requests quoting the error back to the model.
    Retried: timeouts, refused or reset connections, 408/409/429/5xx, a body that is not
    JSON, an empty answer. Nothing waits without a bound: each attempt is cut at
    1.5 x timeout_s + 1 s whatever the HTTP client does, a wait between attempts is at most
    MAX_RETRY_AFTER_S, and the attempts are finite ((max_retries + 1) per model, per repair).
    Raises ModelCallError when no model answered, ModelOutputError when no answer parsed.
    Cancelling the awaiting task closes the in-flight HTTP request.
    """
    headers = {
        "X-Tierd-Role": role,
        "X-Tierd-Purpose": purpose,
        "X-Tierd-Task": task_id,
        "X-Tierd-Round": str(round),
    }
    if stream_id:
        headers["X-Tierd-Stream"] = stream_id
    c = _Call(tier, role, purpose, task_id, stream_id, round, on_record, headers)
    conversation = list(messages)
    problem = ""
    for repair in range(repairs + 1):
        text, record = await _complete(c, conversation, response_model)
        if response_model is None:
            await _emit(on_record, record)
            return ModelResult(text, None, record)
        try:
            parsed = _parse(text, response_model)
        except ValueError as exc:
            problem = str(exc)
            record.outcome, record.error = (
                "error",
                f"invalid {response_model.__name__}: {problem[:500]}",
            )
            await _emit(on_record, record)
            if repair == repairs:
                raise ModelOutputError(
                    f"{role}/{purpose}: the answer never parsed as {response_model.__name__} "
                    f"after {repairs} repair request(s): {problem[:500]}",
                    text,
                ) from exc
            log.info(
                "%s/%s: answer is not a valid %s, asking again",
                role,
                purpose,
                response_model.__name__,
            )
            conversation = [
                *messages,
                {"role": "assistant", "content": text[:REPAIR_QUOTE_CHARS]},
                {
                    "role": "user",
                    "content": f"Your answer could not be used: {problem[:1500]}\nAnswer again "
                    f"with only one JSON object of type {response_model.__name__} "
                    "that fixes this: no prose, no code fences.",
                },
            ]
            continue
        await _emit(on_record, record)
        return ModelResult(text, parsed, record)
    raise AssertionError("unreachable")  # pragma: no cover
