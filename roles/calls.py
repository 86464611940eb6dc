"""How a role asks a model something: the one callable every role is given.

Roles are defined apart from how they run (as in the OpenAI Agents SDK): a role builds its
messages and says what shape it wants back; the caller it is handed decides which model tier
answers, passes the concurrency governor, records usage and remembers finished answers so a
resumed task never asks twice. `roles.model_caller.ModelCaller` is the caller that reaches
the models; the daemon wraps it (`daemon.engine.gateway`), tests script one.

`key` names the call stably within its task (`exec:<stream>:r<round>:a<attempt>`, ...): a
resumed task finds a finished answer under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel


@dataclass
class CallOutput:
    """A model's answer: its text and, for a structured call, the parsed data."""

    text: str
    data: dict[str, Any] | None = None


class Caller(Protocol):
    async def __call__(
        self,
        role: str,
        purpose: str,
        messages: list[dict[str, str]],
        *,
        key: str,
        stream_id: str | None = None,
        round: int = 0,
        response_model: type[BaseModel] | None = None,
    ) -> CallOutput: ...
