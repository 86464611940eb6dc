"""Strict JSON: the one definition of the JSON the API accepts, for JSON-RPC and REST alike.

Stricter than `json.loads` where its leniency would hurt later, far from the input: a NaN, a
number beyond a float's range or a lone UTF-16 surrogate parses, and then fails where it is
written (a reply, the config file, SQLite).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Digits in one integer literal. Python refuses more than 4300 with a message about its own
#: internals; nothing in the API needs a fraction of this many.
MAX_INT_DIGITS = 1000


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


#: One decoder for every body (`json.loads` with these hooks would build one per call).
_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant
)


def decode_json(body: bytes) -> Any:
    """Parse a request body as strict JSON, or raise ValueError saying what is wrong.

    The body must be UTF-8 (RFC 8259 for JSON between systems), NaN/Infinity literals and
    numbers beyond a float's range are refused (they cannot be written back as JSON), and a
    string escape that yields a lone surrogate is refused (it cannot be encoded as UTF-8 in a
    reply, a log or SQLite). Nesting deeper than the interpreter's recursion limit is a parse
    error, not a crash.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        doc = _DECODER.decode(text)
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
