"""`rpc/discover`: the OpenRPC 1.3 document of the JSON-RPC methods, from their models.

Params and results are described by the same pydantic models the dispatcher validates with
and the service returns, so the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter

from daemon import __version__
from daemon.api.rpc_methods import DISCOVER, METHODS
from daemon.service.errors import ERROR_CODES

_REF = "#/components/schemas/{model}"


def _schema(kind: Any, mode: Literal["validation", "serialization"], defs: dict[str, Any]) -> Any:
    """`kind`'s JSON schema, its models moved into `defs` and referenced from there."""
    schema = TypeAdapter(kind).json_schema(mode=mode, ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    if isinstance(kind, type) and "title" in schema:  # a model: referenced like the others
        defs[schema["title"]] = schema
        return {"$ref": _REF.format(model=schema["title"])}
    return schema


def _params(kind: Any, defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = TypeAdapter(kind).json_schema(mode="validation", ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {"name": n, "required": n in required, "schema": s}
        for n, s in schema.get("properties", {}).items()
    ]


def openrpc_document() -> dict[str, Any]:
    """An OpenRPC 1.3 description of every method, with its params and result."""
    defs: dict[str, Any] = {}
    methods = [
        {
            "name": m.name,
            "summary": m.summary,
            "paramStructure": "by-name",
            "params": _params(m.params, defs),
            "result": {"name": "result", "schema": _schema(m.result, "serialization", defs)},
        }
        for m in METHODS.values()
    ]
    methods.append(
        {
            "name": DISCOVER,
            "summary": "This document.",
            "params": [],
            "result": {
                "name": "OpenRPC",
                "schema": {"type": "object", "description": "an OpenRPC 1.3 document: this one"},
            },
        }
    )
    return {
        "openrpc": "1.3.2",
        "info": {"title": "tierd", "version": __version__},
        "servers": [{"name": "tierd", "url": "/rpc"}],
        "methods": methods,
        "components": {
            "schemas": defs,
            "errors": {
                str(code): {"code": code, "message": msg} for code, msg in ERROR_CODES.items()
            },
        },
    }
