"""/openapi.json and rpc/discover describe every result's fields, from the same models.

In-process: the documents are built from the application's routes and the method table,
without a daemon. (test_fuzz checks against a running daemon that responses match them.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from daemon.api.app import fastapi_app
from daemon.api.openapi import openapi_document
from daemon.api.openrpc import openrpc_document
from daemon.api.rpc_methods import DISCOVER, METHODS


def _models(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """The component schemas a result schema refers to (one, or each of a union)."""
    refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
    return [components[ref.rsplit("/", 1)[-1]] for ref in refs]


def test_every_rpc_method_describes_its_result() -> None:
    doc = openrpc_document()
    components = doc["components"]["schemas"]
    methods = {m["name"]: m for m in doc["methods"]}
    assert set(methods) == {*METHODS, DISCOVER}
    for name in METHODS:
        for model in _models(methods[name]["result"]["schema"], components):
            assert model["type"] == "object" and model["properties"], name
    (detail,) = _models(methods["task/get"]["result"]["schema"], components)
    assert {"streams", "questions", "plan", "report"} <= set(detail["properties"])
    (status,) = _models(methods["daemon/status"]["result"]["schema"], components)
    assert {"concurrency", "limits", "process", "tasks"} <= set(status["properties"])


def test_every_rest_operation_describes_its_answer() -> None:
    doc = openapi_document(fastapi_app(SimpleNamespace(service=None, feed=None)))  # type: ignore[arg-type]
    components = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        if path == "/rpc" or path.endswith("/events"):
            continue
        for method, op in item.items():
            ok = op["responses"].get("200") or op["responses"]["202"]
            schema = ok["content"]["application/json"]["schema"]
            for model in _models(schema, components):
                assert model["type"] == "object" and model["properties"], (method, path)
    submitted = components["Submitted"]
    # A new task's answer has no `duplicate`: it must not be required.
    assert submitted["required"] == ["task_id", "state"]
