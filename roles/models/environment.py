"""Provider settings held in the daemon's environment, kept for the server they belong to.

The clients under litellm read settings from the environment on every call: an organisation
(`OPENAI_ORGANIZATION`, `OPENAI_ORG_ID`), a project (`OPENAI_PROJECT`, `OPENAI_PROJECT_ID`),
extra headers (`OPENAI_CUSTOM_HEADERS`), a base URL (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`,
...). Left to them, they go with every request of that client, whatever server it is for: an
organisation set for OpenAI reached a local Ollama and a keyless fallback on another host.

So these variables are taken out of the process environment before any call (`take`: no
client can read them any more) and handed back explicitly, per request, only to the endpoint
they were set for: that provider's own endpoint, i.e. a tier or fallback that names no
api_base of its own (`for_endpoint`). A request to a server the config names carries nothing
from the environment.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["SCOPED", "for_endpoint", "take"]

#: provider -> setting -> the variables that may hold it (the first one set wins).
SCOPED: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {
        "api_base": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        "organization": ("OPENAI_ORGANIZATION", "OPENAI_ORG_ID"),
        "project": ("OPENAI_PROJECT", "OPENAI_PROJECT_ID"),
        "headers": ("OPENAI_CUSTOM_HEADERS",),
    },
    "anthropic": {"api_base": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE")},
}
_NAMES = tuple(
    name for settings in SCOPED.values() for names in settings.values() for name in names
)

_taken: dict[str, str] = {}
_lock = threading.Lock()


def take() -> None:
    """Move every scoped variable out of `os.environ` into this module.

    Cheap and idempotent: called when litellm is set up and again before every request, so a
    variable set later (by a library, a test) is taken before any client can read it.
    """
    if not any(name in os.environ for name in _NAMES):
        return
    with _lock:
        for name in _NAMES:
            value = os.environ.pop(name, None)
            if value is not None:
                _taken[name] = value


def _first(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = _taken.get(name, "").strip()
        if value:
            return value
    return None


def _headers(text: str) -> dict[str, str]:
    """`OPENAI_CUSTOM_HEADERS`: one `Name: value` a line, as the openai client reads it."""
    found = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip():
            found[name.strip()] = value.strip()
    return found


def for_endpoint(provider: str | None, api_base: str | None) -> dict[str, Any]:
    """What the environment says for a request to `provider`, as litellm arguments.

    Only for the provider's own endpoint: with an `api_base` from the config (a local server,
    a fallback elsewhere), nothing. Keys: "api_base", "organization", "extra_headers".
    """
    take()
    settings = SCOPED.get(provider or "")
    if api_base or settings is None:
        return {}
    found: dict[str, Any] = {}
    base = _first(settings.get("api_base", ()))
    if base:
        found["api_base"] = base
    organization = _first(settings.get("organization", ()))
    if organization:
        found["organization"] = organization
    headers = _headers(_first(settings.get("headers", ())) or "")
    project = _first(settings.get("project", ()))
    if project:
        headers["OpenAI-Project"] = project
    if headers:
        found["extra_headers"] = headers
    return found
