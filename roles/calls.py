"""How a role asks a model something: the one callable every role is given.

Roles are defined apart from how they run (as in the OpenAI Agents SDK): a role builds its
messages and says what shape it wants back; the caller it is handed decides which model tier
answers, passes the concurrency governor, records usage and remembers finished answers so a
resumed task never asks twice. `roles.model_caller.ModelCaller` is the caller that reaches
the models; the daemon wraps it (`daemon.engine.gateway`), tests script one.

`key` names the call stably within its task (`exec:<stream>:r<round>:a<attempt>`, ...): a
resumed task finds a finished answer under it.

With `tools` (OpenAI function-calling schemas) the answer may carry tool calls and/or text;
messages then follow the OpenAI format: an assistant message with `tool_calls`
(`assistant_message`) and a `{"role": "tool", "tool_call_id", "content"}` message per result
(`tool_message`). `response_model` and `tools` are not combined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from roles.models.toolcalls import ToolCall, assistant_message, tool_message

__all__ = ["CallOutput", "Caller", "ToolCall", "assistant_message", "tool_message"]


@dataclass
class CallOutput:
    """A model's answer: its text, for a structured call the parsed data, and, for a call
    with tools, the tool calls it asked for (in order)."""

    text: str
    data: dict[str, Any] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


class Caller(Protocol):
    async def __call__(
        self,
        role: str,
        purpose: str,
        messages: list[dict[str, Any]],
        *,
        key: str,
        stream_id: str | None = None,
        round: int = 0,
        response_model: type[BaseModel] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> CallOutput: ...
