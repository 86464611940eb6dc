"""JSON-RPC 2.0 adapter at POST /rpc, to the letter of the spec.

Written here rather than taken from a library because the available ones either tie method
registration to their own schema system or do not give control over batch and notification
edge cases (an empty batch, an all-notification batch) and the -32000 codes tierd documents.
The dispatcher is small; the methods (`rpc_methods`) are the service's, with params validated
by the same pydantic models the REST routes use, results written as the service's result
models say, and `rpc/discover` (`openrpc`) describes both. The results of the methods that
only read the store (task/get, task/list) are kept as JSON until the store next writes
(`detail_cache`) and put into the reply as they are (`RawResult`), byte for byte what
`json.dumps` would write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.api.detail_cache import DetailCache, NotJson, json_bytes
from daemon.api.openrpc import openrpc_document
from daemon.api.rpc_methods import DISCOVER, METHODS, Method
from daemon.api.strict_json import decode_json
from daemon.service.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ServiceError,
    StorageFull,
)
from daemon.service.results import wire
from daemon.service.service import Service
from daemon.store.errors import StoreFull

log = logging.getLogger("tierd.rpc")
_MISSING = object()
#: Calls in one batch. A 1 MiB body holds hundreds of thousands of tiny calls, all run at
#: once; no client needs that many, so a longer batch is refused whole (-32600).
MAX_BATCH = 100


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


@dataclass(frozen=True)
class RawResult:
    """A result already written as JSON (a kept answer, `detail_cache`), put into the reply
    as it is; `error` when it could not be written."""

    json: bytes = b""
    error: BaseException | None = None


def _encode_one(reply: Any) -> bytes:
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, RawResult):
        return json_bytes(reply)
    if result.error is not None:
        raise result.error
    # What json_bytes writes for {"jsonrpc", "result", "id"}, with the result as it is.
    id_ = reply["id"]
    id_json = str(id_).encode() if type(id_) is int else json_bytes(id_)
    return b"".join((b'{"jsonrpc":"2.0","result":', result.json, b',"id":', id_json, b"}"))


def encode_reply(reply: Any) -> bytes:
    """The reply as UTF-8 JSON; an unencodable result becomes an Internal error, never a 500."""
    try:
        if isinstance(reply, list):  # a batch: what json.dumps writes for the list
            return b"[" + b",".join(_encode_one(r) for r in reply) + b"]"
        return _encode_one(reply)
    except (TypeError, ValueError, RecursionError) as exc:
        log.exception("internal error: a JSON-RPC reply could not be written as JSON")
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
        #: Results of the methods that only read the store, kept until it next writes.
        self._kept = DetailCache()

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
        if name == DISCOVER:
            return openrpc_document()
        method = METHODS.get(name)
        if method is None:
            return _Failure(
                METHOD_NOT_FOUND,
                "Method not found",
                {"method": name, "available": sorted([*METHODS, DISCOVER])},
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
        # A method that only reads the store answers from what it kept, if it kept an answer
        # to these very params since the store last wrote: they were valid then, and they
        # validate the same way now.
        key = f"{name}\n{params!r}" if method.store_view else None
        kept = None if key is None else self._kept.kept(key)
        if kept is not None:
            return RawResult(kept)
        try:
            parsed = method.params.model_validate(params)
        except ValidationError as exc:
            return _Failure(INVALID_PARAMS, "Invalid params", _validation_data(exc))
        try:
            if key is not None:
                return await self._kept_result(key, method, parsed)
            return wire(await method.call(self.service, parsed))
        except ServiceError as exc:
            return _Failure(exc.code, exc.message, exc.data)
        except StoreFull as exc:
            full = StorageFull.from_store(exc)
            return _Failure(full.code, full.message, full.data)
        except Exception as exc:
            # A bug of the daemon's: its traceback goes to the daemon's log (stderr), where
            # it can be found and reported, and never on the wire.
            log.exception("internal error in JSON-RPC method %s", name)
            return _Failure(INTERNAL_ERROR, "Internal error", {"type": type(exc).__name__})

    async def _kept_result(self, key: str, method: Method, params: BaseModel) -> RawResult:
        """The method's result as JSON, kept under `key` until the store next writes."""

        async def build() -> Any:
            return wire(await method.call(self.service, params))

        try:
            return RawResult(await self._kept.get(key, build))
        except NotJson as exc:
            # Reported as a reply that cannot be written is (`encode_reply`).
            return RawResult(error=exc.__cause__ or exc)


@dataclass
class _Failure:
    code: int
    message: str
    data: Any = None
