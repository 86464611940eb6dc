"""A model tier: one role's litellm model, where it is served, its fallbacks and limits.

A tier names the environment variable that holds its key, never the key: the key is read at
call time (`api_key`) and never stored, logged or put in a record or an error message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from roles.models.errors import ModelConfigError

__all__ = ["NO_KEY", "ModelTier"]

#: A key is sent to OpenAI-compatible servers that need none (the openai client insists on one).
NO_KEY = "tierd-no-key"

# "model@http://host/v1": a fallback served elsewhere. Model names may hold "@" themselves
# (Vertex AI's "claude-3-5-sonnet@20240620"), so only "@" before a URL scheme counts.
_AT_URL_RE = re.compile(r"(.+?)@(https?://\S+)")


@dataclass
class ModelTier:
    """One role's model: a litellm model name, where it is served, fallbacks and limits.

    `fallbacks` are litellm model names tried in order once the main model has used its
    retries; they are served from the same `api_base` with the same key, unless a name ends
    in `@` and an http(s) URL: `"openai/gpt-5-mini@http://127.0.0.1:11434/v1"` is served
    there (a second server when the first one is down).
    """

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    timeout_s: float = 120.0
    max_retries: int = 3
    #: Requests quoting a parse error back to the model before its answer counts as unusable.
    max_repairs: int = 2
    #: First delay of the exponential backoff between retries (doubles each time).
    backoff_s: float = 0.5
    #: Ask for the answer as a stream of chunks (assembled here), text and tool calls alike.
    stream: bool = False

    _KEYS = (
        "model",
        "api_base",
        "api_key_env",
        "fallbacks",
        "timeout_s",
        "max_retries",
        "max_repairs",
        "backoff_s",
        "stream",
    )

    @classmethod
    def from_config(cls, data: Mapping[str, Any], *, where: str = "") -> ModelTier:
        """A tier from a config table, e.g. the keys of `[models.executor]`.

        `where` prefixes key names in error messages ("models.executor."). Empty strings
        mean "not set" for api_base and api_key_env, as in config/default.toml.
        """
        unknown = sorted(set(data) - set(cls._KEYS))
        if unknown:
            raise ModelConfigError(
                f"unknown key {where}{unknown[0]} (known: {', '.join(cls._KEYS)})"
            )

        def text(key: str, required: bool = False) -> str | None:
            value = data.get(key)
            if value is None or value == "":
                if required:
                    raise ModelConfigError(
                        f"{where}{key} is required: a litellm model name, e.g. 'openai/gpt-5-mini'"
                    )
                return None
            if not isinstance(value, str) or not value.strip():
                raise ModelConfigError(f"{where}{key} must be a non-empty string, not {value!r}")
            return value.strip()

        def number(key: str, default: float, low: float, integer: bool = False) -> Any:
            value = data.get(key, default)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if integer:
                ok = ok and float(value).is_integer()
            if not ok or value < low or (isinstance(value, float) and math.isnan(value)):
                kind = "an integer" if integer else "a number"
                raise ModelConfigError(f"{where}{key} must be {kind} >= {low}, not {value!r}")
            return int(value) if integer else float(value)

        fallbacks = data.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(
            isinstance(f, str) and f.strip() for f in fallbacks
        ):
            raise ModelConfigError(
                f"{where}fallbacks must be a list of model names, not {fallbacks!r}"
            )
        timeout = number("timeout_s", 120.0, 0.001)
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise ModelConfigError(f"{where}stream must be true or false, not {stream!r}")
        return cls(
            model=text("model", required=True) or "",
            api_base=text("api_base"),
            api_key_env=text("api_key_env"),
            fallbacks=[f.strip() for f in fallbacks],
            timeout_s=timeout,
            max_retries=number("max_retries", 3, 0, integer=True),
            max_repairs=number("max_repairs", 2, 0, integer=True),
            backoff_s=number("backoff_s", 0.5, 0.0),
            stream=stream,
        )

    def endpoints(self) -> list[tuple[str, str | None]]:
        """(model, api_base) of the main model, then of each fallback, in the order tried."""
        found = [(self.model, self.api_base)]
        for name in self.fallbacks:
            match = _AT_URL_RE.fullmatch(name)
            found.append((match[1], match[2]) if match else (name, self.api_base))
        return found

    def api_key(self) -> str | None:
        """The key from the environment; None lets litellm find the provider's default."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ModelConfigError(
                    f"the environment variable {self.api_key_env} (api_key_env of model "
                    f"{self.model}) is not set",
                    model=self.model,
                )
            return key
        return NO_KEY if self.api_base else None
