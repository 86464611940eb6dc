"""The HTTP layer's part in attachments, on the ASGI stack itself: the guard raises the body cap
only for a submit that carries attachments, and a multipart submit becomes the JSON the route
takes (files as base64 attachments), refused with a 4xx naming the field when it cannot."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from daemon.api.guard import Guard, attachment_body_cap
from daemon.api.json_body import StrictJsonBody

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 4096


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """An app answering with the body it was handed and its content type."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
    reply = json.dumps({"size": len(body), "type": content_type, "body": body.decode()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": reply})


def client(attachment_cap: int | None) -> httpx.AsyncClient:
    guard = Guard(
        StrictJsonBody(echo),
        token=TOKEN,
        allowed_origins=[],
        max_body_bytes=MAX_BODY,
        max_attachment_body_bytes=attachment_cap,
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://127.0.0.1", headers=AUTH
    )


def submit(files: int, size: int = 6000) -> dict[str, Any]:
    doc: dict[str, Any] = {"goal": "g" * (size if not files else 10)}
    if files:
        data = base64.b64encode(b"x" * size).decode()
        doc["attachments"] = [{"name": f"{i}.png", "data": data} for i in range(files)]
    return doc


def form(*parts: tuple[str, str | None, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body of (field name, file name, content type, data) parts, and its
    content type header (httpx sends a form without files url-encoded)."""
    boundary = "f0rm-b0undary"
    chunks = []
    for name, filename, content_type, data in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if filename is not None:
            head += f'; filename="{filename}"'
        head += "\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "") + "\r\n"
        chunks.append(head.encode() + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_the_cap_for_attachments_is_the_base64_of_a_tasks_files_and_some_room() -> None:
    assert attachment_body_cap(1000, 3_000_000) == 1000 + 4_000_000 + (1 << 20)


async def test_only_a_submit_with_attachments_may_pass_the_ordinary_cap() -> None:
    cap = attachment_body_cap(MAX_BODY, 30_000)
    async with client(cap) as h:
        # Over server.max_body_bytes, with files: through, on REST and JSON-RPC alike.
        assert (await h.post("/v1/tasks", json=submit(1))).status_code == 200
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": submit(1)}
        assert (await h.post("/rpc", json=rpc)).status_code == 200
        assert (
            await h.post("/rpc", json=[{"jsonrpc": "2.0", "method": "x"}, rpc])
        ).status_code == 200
        # The same size without files, or on another route: the ordinary cap.
        for path, doc in [
            ("/v1/tasks", submit(0)),
            ("/rpc", {"jsonrpc": "2.0", "id": 1, "method": "task/submit", "params": submit(0)}),
            ("/rpc", {"jsonrpc": "2.0", "id": 1, "method": "config/set", "params": submit(1)}),
            ("/v1/tasks", {**submit(0), "attachments": []}),
        ]:
            reply = await h.post(path, json=doc)
            assert reply.status_code == 413, (path, reply.text)
            assert reply.json()["error"]["message"] == f"request body over {MAX_BODY} bytes"
        assert (await h.put("/v1/config", json=submit(1))).status_code == 413
        # Beyond the raised cap (its room for names and headers is 1 MiB): refused too,
        # saying which cap.
        reply = await h.post("/v1/tasks", json=submit(2, 600_000))
        assert reply.status_code == 413 and "attachments.max_task_bytes" in reply.text
        # A declared length beyond it is refused before the body is read.
        reply = await h.post("/v1/tasks", content=b"{}", headers={"content-length": str(cap + 1)})
        assert reply.status_code == 413


async def test_without_a_raised_cap_every_body_keeps_the_ordinary_one() -> None:
    async with client(None) as h:
        assert (await h.post("/v1/tasks", json=submit(1))).status_code == 413


async def test_a_multipart_submit_becomes_the_json_the_route_takes() -> None:
    task = {"goal": "Read these", "options": {"approval": "required"}}
    files = [
        ("attachments", ("photo.png", b"\x89PNG\r\n\x1a\nrest", "image/png")),
        ("attachments", ("costs.csv", b"a,b\n1,2\n", "text/csv")),
        ("attachments", ("blob", b"\x00\x01", "application/octet-stream")),
        ("attachments", ("reçu €.pdf", b"%PDF-", "application/pdf")),
    ]
    async with client(attachment_body_cap(MAX_BODY, 1 << 20)) as h:
        reply = await h.post("/v1/tasks", data={"task": json.dumps(task)}, files=files)
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    assert seen["type"] == "application/json"
    doc = json.loads(seen["body"])
    assert doc["goal"] == "Read these" and doc["options"] == {"approval": "required"}
    assert [(a["name"], a["media_type"]) for a in doc["attachments"]] == [
        ("photo.png", "image/png"),
        ("costs.csv", "text/csv"),
        ("blob", "application/octet-stream"),
        ("reçu €.pdf", "application/pdf"),
    ]
    assert base64.b64decode(doc["attachments"][1]["data"]) == b"a,b\n1,2\n"


@pytest.mark.parametrize(
    ("parts", "field", "words"),
    [
        ([("attachments", "a.png", "image/png", b"x")], "task", "task: missing"),
        ([("task", None, None, b"{not json")], "task", "not strict JSON"),
        ([("task", None, None, b"[1]")], "task", "must be a JSON object"),
        (
            [("task", None, None, b'{"goal": "g", "attachments": []}')],
            "task",
            "file parts named 'attachments'",
        ),
        ([("task", None, None, b"{}"), ("task", None, None, b"{}")], "task", "given twice"),
        ([("task", None, None, b"{}"), ("extra", None, None, b"1")], "extra", "field 'extra'"),
        # Names in UTF-8 (what browsers send), which HTTP headers call latin-1.
        ([("task", None, None, b"{}"), ("été", None, None, b"1")], "été", "field 'été'"),
        (
            [("task", None, None, b"{}"), ("photo", "p.png", "image/png", b"x")],
            "photo",
            "file part 'photo'",
        ),
        (
            [("task", None, None, b"{}"), ("attachments", "", "image/png", b"x")],
            "attachments[0]",
            "a file part needs a filename",
        ),
    ],
)
async def test_a_form_that_cannot_be_a_submit_is_refused_naming_the_field(
    parts: list[tuple[str, str | None, str | None, bytes]], field: str, words: str
) -> None:
    body, headers = form(*parts)
    async with client(None) as h:
        reply = await h.post("/v1/tasks", content=body, headers=headers)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == -32602 and error["data"] == {"field": field}
    assert words in error["message"]


async def test_a_broken_form_is_a_400() -> None:
    async with client(None) as h:
        for headers in (
            {"content-type": "multipart/form-data"},  # no boundary
            {"content-type": "multipart/form-data; boundary=zz"},  # not that boundary
        ):
            reply = await h.post("/v1/tasks", content=b"junk", headers=headers)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["code"] == -32700
