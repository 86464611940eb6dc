"""Structured answers: asking a model for JSON of a given type, and finding it in the answer.

A model that supports JSON schemas gets the schema as `response_format`; one that does not is
told it in a system message (litellm knows which is which: see `transport`). Answers are read
leniently (the whole text, a fenced block, or an object inside prose), and a problem is
described in words a model can act on, because it is quoted back to the model in a repair
request. No litellm here: parsing is plain JSON and pydantic.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["extract_json", "parse", "response_format", "schema_instruction"]

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


def parse(text: str, response_model: type[BaseModel]) -> BaseModel:
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


@functools.cache
def _schema_json(response_model: type[BaseModel]) -> str:
    """The model's JSON schema as compact JSON, built once per model class: pydantic builds it
    afresh on every call, which cost a structured call more CPU than the rest of its set-up.
    Kept as text so each caller gets its own copy of the dict to hand to litellm."""
    return json.dumps(response_model.model_json_schema(), separators=(",", ":"))


def response_format(response_model: type[BaseModel]) -> dict[str, Any]:
    """The `response_format` argument asking for `response_model`'s JSON schema."""
    # Not strict: OpenAI's strict mode needs every field required and no defaults, which
    # the schemas (deliberately lenient towards models) do not satisfy.
    return {
        "type": "json_schema",
        "json_schema": {
            "name": response_model.__name__,
            "schema": json.loads(_schema_json(response_model)),
            "strict": False,
        },
    }


def schema_instruction(response_model: type[BaseModel]) -> dict[str, str]:
    """A system message stating the schema, for a model that takes no `response_format`."""
    schema = _schema_json(response_model)
    return {
        "role": "system",
        "content": f"Answer with one JSON object of type {response_model.__name__} and "
        f"nothing else (no prose, no code fences). Its JSON schema: {schema}",
    }
