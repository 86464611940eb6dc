"""REST bodies, before FastAPI parses them: strict JSON, and a submit's multipart form as JSON.

Its own layer because FastAPI's parser is lenient in ways that fail later, far from the input.
A submit sent as `multipart/form-data` (POST /v1/tasks: a `task` field holding the submit's
JSON, and files under `attachments`) is turned into the JSON body the route takes, each file
as an attachment `{"name", "media_type", "data": base64}`: one route, one validation, the same
errors whichever way the files came. The form is parsed in memory (python-multipart's
parser; the guard has already read and capped the body), never spooled to a temporary file
outside tierd's home.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from daemon.api.guard import read_body, replaying
from daemon.api.strict_json import decode_json
from daemon.service.errors import INVALID_PARAMS, PARSE_ERROR

__all__ = ["FormRefused", "StrictJsonBody", "submit_from_form"]

#: The route that takes a submit as a multipart form.
FORM_PATH = "/v1/tasks"
#: python-multipart logs each malformed form it meets as a warning; the refusal says it.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


class FormRefused(ValueError):
    """A multipart submit that cannot be used: `status` 400 (not a form) or 422 (a field)."""

    def __init__(self, status: int, field_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field_name


@dataclass
class _Part:
    #: Header values as sent (bytes: a form's names may be UTF-8, which HTTP calls latin-1).
    headers: dict[str, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


def _parts(body: bytes, content_type: str) -> list[_Part]:
    """The parts of a multipart body, headers (lower-case names) and data."""
    _kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise FormRefused(400, "body", "multipart/form-data without a boundary")
    parts: list[_Part] = []
    name, value = bytearray(), bytearray()

    def header_end() -> None:
        parts[-1].headers[name.decode("latin-1").lower()] = bytes(value)
        name.clear()
        value.clear()

    callbacks: Any = {
        "on_part_begin": lambda: parts.append(_Part()),
        "on_header_field": lambda d, s, e: name.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": header_end,
        "on_part_data": lambda d, s, e: parts[-1].data.extend(d[s:e]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's errors, and a boundary it refuses
        raise FormRefused(400, "body", f"not a readable multipart form ({exc})") from None
    return parts


def _options(part: _Part, header: str) -> tuple[bytes, dict[bytes, bytes]]:
    try:
        return parse_options_header(part.headers.get(header, b""))
    except Exception as exc:  # a header python-multipart cannot split
        raise FormRefused(400, "body", f"not a readable multipart form ({header}: {exc})") from None


def _disposition(part: _Part) -> tuple[str, str | None]:
    """The part's form field name and file name (None: not a file)."""
    _kind, options = _options(part, "content-disposition")
    field_name = options.get(b"name", b"").decode("utf-8", "replace")
    filename = options.get(b"filename")
    return field_name, None if filename is None else filename.decode("utf-8", "replace")


def _task_field(part: _Part) -> dict[str, Any]:
    try:
        doc = decode_json(bytes(part.data))
    except ValueError as exc:
        raise FormRefused(422, "task", f"task: not strict JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FormRefused(422, "task", "task: must be a JSON object (the submit's params)")
    if "attachments" in doc:
        raise FormRefused(
            422,
            "task",
            "task: in a form, attachments are file parts named 'attachments', not a field "
            "of the task's JSON",
        )
    return doc


def submit_from_form(body: bytes, content_type: str) -> dict[str, Any]:
    """The submit's JSON body from its multipart form; FormRefused saying what is wrong."""
    task: dict[str, Any] | None = None
    files: list[dict[str, Any]] = []
    for part in _parts(body, content_type):
        field_name, filename = _disposition(part)
        if field_name == "task" and filename is None:
            if task is not None:
                raise FormRefused(422, "task", "task: given twice; send one task field")
            task = _task_field(part)
        elif field_name == "attachments":
            index = len(files)
            if not filename:
                raise FormRefused(
                    422,
                    f"attachments[{index}]",
                    f"attachments[{index}]: a file part needs a filename (its name in the "
                    "plan and prompts)",
                )
            _kind, _ = _options(part, "content-type")
            files.append(
                {
                    "name": filename,
                    "media_type": _kind.decode("latin-1"),
                    "data": base64.b64encode(bytes(part.data)).decode("ascii"),
                }
            )
        else:
            what = f"file part {field_name!r}" if filename is not None else f"field {field_name!r}"
            raise FormRefused(
                422,
                field_name or "body",
                f"{what} is not part of a submit: the form takes a 'task' field (the submit's "
                "JSON) and file parts named 'attachments'",
            )
    if task is None:
        raise FormRefused(
            422, "task", "task: missing; the form needs a 'task' field with the submit's JSON"
        )
    return {**task, "attachments": files} if files else task


def _refusal(status: int, field_name: str, message: str) -> JSONResponse:
    code = PARSE_ERROR if status == 400 else INVALID_PARAMS
    return JSONResponse(
        {"error": {"code": code, "message": message, "data": {"field": field_name}}},
        status_code=status,
    )


def _as_json(scope: Any, length: int) -> Any:
    """`scope` with its content type and length those of a JSON body of `length` bytes."""
    headers = [
        (k, v)
        for k, v in scope.get("headers", [])
        if k.lower() not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {**scope, "headers": headers}


#: Endpoints whose own dispatcher checks the JSON and answers a bad body as JSON-RPC says
#: (-32700), not as a REST 400: tierd's /rpc and the A2A binding (which the A2A conformance kit
#: also reaches with a trailing slash).
JSON_RPC_PATHS = frozenset({"/rpc", "/a2a", "/a2a/"})


class StrictJsonBody:
    """Refuses a REST body that is not strict JSON, with the same rules as JSON-RPC, and
    turns a submit's multipart form into its JSON.

    FastAPI's parser takes NaN, 1e400 (as infinity) and lone UTF-16 surrogates, which then
    fail later where they are written (a reply, the config file, SQLite), and it answers a
    too-deep document with a bare 400. `decode_json` is the one definition of acceptable
    JSON for both adapters. Runs inside the guard, so the body is already read and capped.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in {"POST", "PUT", "PATCH"}
            or scope["path"] in JSON_RPC_PATHS
        ):  # the dispatchers answer in JSON-RPC's terms
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        content_type = next(
            (
                v.decode("latin-1")
                for k, v in scope.get("headers", [])
                if k.lower() == b"content-type"
            ),
            "",
        )
        if scope["path"] == FORM_PATH and content_type.lower().startswith("multipart/form-data"):
            try:
                body = json.dumps(submit_from_form(body, content_type)).encode()
            except FormRefused as exc:
                await _refusal(exc.status, exc.field, str(exc))(scope, receive, send)
                return
            await self.app(_as_json(scope, len(body)), replaying(body, receive), send)
            return
        if body.strip():
            try:
                decode_json(body)
            except ValueError as exc:
                await _refusal(400, "body", f"body: {exc}")(scope, receive, send)
                return
        await self.app(scope, replaying(body, receive), send)
