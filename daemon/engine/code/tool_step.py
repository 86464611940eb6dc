"""One tool call of a code loop, at most once: the coder's and the orchestrator's fix alike.

A tool call's result is saved (under its memo key, in one transaction with the stream's facts
and its `tool.step` event) before the loop goes on, so a resumed loop reads it back instead of
running the call again: a finished command never runs twice. The callers differ only in whose
record the step joins and how the event is numbered; this module holds the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from daemon.engine.code.sites import StreamSite
from daemon.engine.code.tools import ToolResult
from daemon.engine.context import TaskContext
from roles.calls import ToolCall

__all__ = ["COMMAND_OUTPUT_CHARS", "ToolStep", "run_tool_step"]

#: Output of a command kept in a record (its tail: where test failures are).
COMMAND_OUTPUT_CHARS = 1500


@dataclass(frozen=True)
class ToolStep:
    """A tool call's result, and whether it ran now (False: read back from the memo)."""

    result: ToolResult
    fresh: bool

    def command(self, call: ToolCall) -> dict[str, Any] | None:
        """The command the call ran, as a record lists it; None if it ran none."""
        r = self.result
        if r.command is None:
            return None
        return {
            "name": _command_name(call.arguments),
            "command": r.command,
            "exit_code": r.exit_code,
            "duration_s": r.duration_s,
            "output": r.output[-COMMAND_OUTPUT_CHARS:],
        }

    def event(self, stream_id: str, step: int, **extra: Any) -> dict[str, Any]:
        """The `tool.step` event's data: the stream, the step number, what the tool did."""
        r = self.result
        return {
            "stream_id": stream_id,
            **extra,
            "step": step,
            "tool": r.tool,
            "ok": r.ok,
            "path": r.path,
            "command": r.command,
            "exit_code": r.exit_code,
            "duration_s": r.duration_s,
        }


async def run_tool_step(ctx: TaskContext, site: StreamSite, key: str, call: ToolCall) -> ToolStep:
    """The call's saved result under `key`, else the call run now on the stream's site (the
    caller saves it)."""
    saved = await ctx.store.get_step(ctx.task_id, key)
    fresh = saved is None
    if saved is None:
        result = await site.tool(call.name, call.arguments)
    else:
        result = ToolResult.from_dict(saved)
    return ToolStep(result, fresh)


def _command_name(arguments: str) -> str:
    """The `name` argument of a run_command call ("test" when the model left it out)."""
    try:
        name = json.loads(arguments).get("name", "test")
    except (ValueError, AttributeError):
        return "test"
    return str(name)
