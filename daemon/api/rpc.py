"""JSON-RPC 2.0 adapter at POST /rpc, to the letter of the spec.

Written here rather than taken from a library because the available ones either tie method
registration to their own schema system or do not give control over batch and notification
edge cases (an empty batch, an all-notification batch) and the -32000 codes tierd documents.
The dispatcher is small; the methods are the service's, with params validated by the same
pydantic models the REST routes use, and `rpc/discover` describes them as OpenRPC.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon import __version__
from daemon.service.errors import (
    ERROR_CODES,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ServiceError,
)
from daemon.service.params import (
    AnswerParams,
    ApproveParams,
    ConfigGetParams,
    ConfigSetParams,
    ListParams,
    NoParams,
    SubmitParams,
    TaskIdParams,
)
from daemon.service.service import Service

_MISSING = object()
#: Calls in one batch. A 1 MiB body holds hundreds of thousands of tiny calls, all run at
#: once; no client needs that many, so a longer batch is refused whole (-32600).
MAX_BATCH = 100
#: Digits in one integer literal. Python refuses more than 4300 with a message about its own
#: internals; nothing in the API needs a fraction of this many.
MAX_INT_DIGITS = 1000


@dataclass(frozen=True)
class Method:
    name: str
    params: type[BaseModel]
    summary: str
    call: Callable[[Service, Any], Awaitable[Any]]


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "task/submit",
            SubmitParams,
            "Submit a task; returns its id at once.",
            lambda s, p: s.submit(p),
        ),
        Method(
            "task/get",
            TaskIdParams,
            "A task with its streams, verdicts, result and report.",
            lambda s, p: s.get(p),
        ),
        Method(
            "task/list", ListParams, "Tasks, newest first, paged by cursor.", lambda s, p: s.list(p)
        ),
        Method(
            "task/cancel", TaskIdParams, "Cancel a live task at once.", lambda s, p: s.cancel(p)
        ),
        Method(
            "task/answer",
            AnswerParams,
            "Answer open questions; resumes the waiting streams.",
            lambda s, p: s.answer(p),
        ),
        Method(
            "task/approve",
            ApproveParams,
            "Approve or reject a result awaiting approval.",
            lambda s, p: s.approve(p),
        ),
        Method(
            "daemon/status",
            NoParams,
            "Version, pid, uptime, store, task counts, concurrency.",
            lambda s, p: s.status(),
        ),
        Method(
            "config/get",
            ConfigGetParams,
            "The effective configuration, or one key.",
            lambda s, p: s.config_get(p),
        ),
        Method(
            "config/set",
            ConfigSetParams,
            "Set one key in the user's global configuration.",
            lambda s, p: s.config_set(p),
        ),
    ]
}


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


def _validation_data(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "params", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 is valid JSON but no float: it would come back as Infinity, which is not JSON.
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(text)} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(body: bytes) -> Any:
    """Parse a request body as strict JSON, or raise ValueError saying what is wrong.

    Stricter than `json.loads` where its leniency would hurt later: the body must be UTF-8
    (RFC 8259 for JSON between systems), NaN/Infinity literals and numbers beyond a float's
    range are refused (they cannot be written back as JSON), and a string escape that yields
    a lone surrogate is refused (it cannot be encoded as UTF-8 in a reply, a log or SQLite).
    Nesting deeper than the interpreter's recursion limit is a parse error, not a crash.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        doc = json.loads(
            text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant
        )
    except RecursionError:
        raise ValueError("the document is nested too deeply") from None
    # Only a \uD800-\uDFFF escape can produce a lone surrogate, so the full check runs only
    # for bodies that contain one.
    if "\\ud" in text.lower():
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF) that is not a character"
            ) from None
        except RecursionError:
            raise ValueError("the document is nested too deeply") from None
    return doc


def encode_reply(reply: Any) -> bytes:
    """The reply as UTF-8 JSON; an unencodable result becomes an Internal error, never a 500."""
    try:
        return json.dumps(reply, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8"
        )
    except (TypeError, ValueError, RecursionError) as exc:
        id_ = reply.get("id") if isinstance(reply, dict) else None
        fallback = _error(
            id_,
            INTERNAL_ERROR,
            "Internal error",
            {"detail": "the result could not be written as JSON", "type": type(exc).__name__},
        )
        return json.dumps(fallback).encode("utf-8")


def _valid_id(value: Any) -> bool:
    # The spec allows a string, a number or null; bool is a number in Python, not in JSON.
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


class RpcDispatcher:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def handle_body(self, body: bytes) -> Any | None:
        """The response document for a request body, or None when nothing is to be sent."""
        try:
            doc = decode_json(body)
        except ValueError as exc:
            return _error(None, PARSE_ERROR, "Parse error", {"detail": str(exc)})
        if isinstance(doc, list):
            if not doc:
                return _error(
                    None,
                    INVALID_REQUEST,
                    "Invalid Request",
                    {"detail": "an empty batch is not a request"},
                )
            if len(doc) > MAX_BATCH:
                return _error(
                    None,
                    INVALID_REQUEST,
                    "Invalid Request",
                    {
                        "detail": f"a batch holds at most {MAX_BATCH} calls, "
                        f"this one has {len(doc)}",
                        "max_batch": MAX_BATCH,
                    },
                )
            replies = await asyncio.gather(*(self.handle_one(item) for item in doc))
            out = [r for r in replies if r is not None]
            return out or None
        return await self.handle_one(doc)

    async def handle_one(self, req: Any) -> dict[str, Any] | None:
        if not isinstance(req, dict):
            return _error(
                None,
                INVALID_REQUEST,
                "Invalid Request",
                {"detail": "a request must be a JSON object"},
            )
        id_ = req.get("id", _MISSING)
        is_notification = id_ is _MISSING
        reply_id = None if is_notification or not _valid_id(id_) else id_
        problems = []
        if req.get("jsonrpc") != "2.0":
            problems.append('"jsonrpc" must be exactly "2.0"')
        if not isinstance(req.get("method"), str):
            problems.append('"method" must be a string')
        if not is_notification and not _valid_id(id_):
            problems.append('"id" must be a string, a number or null')
        params = req.get("params", {})
        if "params" in req and not isinstance(params, (dict, list)):
            problems.append('"params" must be an object or an array')
        if problems:
            return _error(
                reply_id, INVALID_REQUEST, "Invalid Request", {"detail": "; ".join(problems)}
            )
        result = await self._call(req["method"], params)
        if is_notification:
            return None
        if isinstance(result, _Failure):
            return _error(reply_id, result.code, result.message, result.data)
        return {"jsonrpc": "2.0", "result": result, "id": reply_id}

    async def _call(self, name: str, params: dict[str, Any] | list[Any]) -> Any:
        if name == "rpc/discover":
            return openrpc_document()
        method = METHODS.get(name)
        if method is None:
            return _Failure(
                METHOD_NOT_FOUND,
                "Method not found",
                {"method": name, "available": sorted([*METHODS, "rpc/discover"])},
            )
        if isinstance(params, list):
            # By-name only (OpenRPC paramStructure "by-name"): positions would tie clients to
            # the order of fields, which the models do not promise.
            return _Failure(
                INVALID_PARAMS,
                "Invalid params",
                [
                    {
                        "field": "params",
                        "message": "params must be an object of named "
                        "parameters; by-position (array) params are not supported",
                    }
                ],
            )
        try:
            parsed = method.params.model_validate(params)
        except ValidationError as exc:
            return _Failure(INVALID_PARAMS, "Invalid params", _validation_data(exc))
        try:
            return await method.call(self.service, parsed)
        except ServiceError as exc:
            return _Failure(exc.code, exc.message, exc.data)
        except Exception as exc:  # never a traceback on the wire
            return _Failure(INTERNAL_ERROR, "Internal error", {"type": type(exc).__name__})


@dataclass
class _Failure:
    code: int
    message: str
    data: Any = None


def openrpc_document() -> dict[str, Any]:
    """An OpenRPC 1.3 description of every method."""
    methods = []
    components: dict[str, Any] = {}
    for m in METHODS.values():
        schema = m.params.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        methods.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": [
                    {"name": n, "required": n in required, "schema": s}
                    for n, s in schema.get("properties", {}).items()
                ],
                "result": {"name": "result", "schema": {"type": "object"}},
            }
        )
    methods.append(
        {
            "name": "rpc/discover",
            "summary": "This document.",
            "params": [],
            "result": {"name": "OpenRPC", "schema": {"type": "object"}},
        }
    )
    return {
        "openrpc": "1.3.2",
        "info": {"title": "tierd", "version": __version__},
        "servers": [{"name": "tierd", "url": "/rpc"}],
        "methods": methods,
        "components": {
            "schemas": components,
            "errors": {
                str(code): {"code": code, "message": msg} for code, msg in ERROR_CODES.items()
            },
        },
    }
