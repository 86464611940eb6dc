"""A query parameter that takes one value must be given once.

FastAPI keeps the last of `?cursor=a&cursor=b` and serves the request, so a request the
OpenAPI document calls invalid (the first value too long, say) is answered as if it were fine,
and the client never learns that half of what it sent was ignored. This dependency, on every
route of the REST and event routers, refuses it instead: -32602 / 422 naming the parameter.
Parameters declared as lists (`state`, "repeat for any of several states") may repeat.
"""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant

from daemon.service.errors import InvalidParams

__all__ = ["single_valued_query"]

_MANY = (list, tuple, set, frozenset, Sequence)


def _takes_many(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return origin in _MANY or annotation in _MANY


def _single_valued(dependant: Dependant) -> Iterator[str]:
    """The query parameters of `dependant` and its sub-dependencies that take one value."""
    for field in dependant.query_params:
        if not _takes_many(field.field_info.annotation):
            yield field.alias
    for sub in dependant.dependencies:
        yield from _single_valued(sub)


async def single_valued_query(request: Request) -> None:
    """Refuse a request that repeats a query parameter which takes one value."""
    if not request.url.query:
        return
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    counts = Counter(name for name, _ in request.query_params.multi_items())
    for name in _single_valued(dependant):
        if counts[name] > 1:
            raise InvalidParams(
                f"{name}: given {counts[name]} times; it takes one value",
                {"field": name},
            )
