"""Tool calls in a model's answer (OpenAI function calling): reading them, and writing the
messages that carry them back into a conversation.

A tool call keeps its arguments as the JSON text the model wrote, valid or not: whoever runs
the tool parses it and, when it is not JSON, tells the model so (a repair the model can act
on), so nothing here may raise on a bad argument string. No litellm here: litellm's message
objects and plain dicts are both read by attribute or key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "assistant_message", "tool_calls_of", "tool_message"]


@dataclass
class ToolCall:
    """One tool call a model asked for."""

    #: The model's tool_call id: the tool's result message names it.
    id: str
    name: str
    #: The JSON text as the model wrote it (may be invalid JSON).
    arguments: str

    def as_dict(self) -> dict[str, str]:
        """The call as stored (the step memo): {"id", "name", "arguments"}."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(str(data["id"]), str(data["name"]), str(data.get("arguments") or ""))


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def tool_calls_of(message: Any) -> list[ToolCall]:
    """The tool calls of an assistant message (litellm's `Message` or a dict), in order.

    A call without a function name is left out: there is nothing to run and nothing the
    model could be told about it.
    """
    found = []
    for index, raw in enumerate(_get(message, "tool_calls") or []):
        function = _get(raw, "function")
        name = _get(function, "name") if function is not None else None
        if not name:
            continue
        arguments = _get(function, "arguments")
        if not isinstance(arguments, str):
            # Some providers hand back parsed arguments; keep the JSON text either way.
            arguments = json.dumps(arguments) if arguments is not None else ""
        call_id = _get(raw, "id") or f"call_{index}"
        found.append(ToolCall(str(call_id), str(name), arguments))
    return found


def assistant_message(text: str, tool_calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant's answer as a message to send back in the conversation."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in tool_calls
        ]
    return message


def tool_message(call_id: str, content: str) -> dict[str, Any]:
    """A tool's result, answering the tool call `call_id`."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}
