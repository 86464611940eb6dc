"""The coder's loop: ask the model, run the tools it calls, hand back their results, repeat.

A small loop of our own on the task's `Caller` (litellm underneath, OpenAI function calling),
not an agent framework: each step must be durable through tierd's own step memo, which no
framework offers (openai-agents would pull in openai 3, LangGraph's prebuilt agent is
deprecated). Every model answer is a memoised call (`code:<stream>:r<round>:s<step>`), and
every tool result is saved under its own key before the next step counts
(`tool:code:<stream>:r<round>:s<step>:<i>`): a loop resumed after a crash rebuilds the same
conversation from the memo without asking a model again or running a finished command again.

The loop ends when the model calls `finish` (its summary is the stream's), when it answers
with text and no tool call (that text is the summary, as in other agent loops), or when it
has used `max_steps` answers (`StepsExhausted`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daemon.engine.errors import StreamFailed
from roles.calls import Caller, ToolCall, assistant_message, tool_message

__all__ = ["LoopResult", "StepsExhausted", "ToolOutcome", "ToolRunner", "run_loop"]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call gave: the text the model reads, and the finish summary if it ended."""

    text: str
    #: Set when the call was a successful `finish`: the stream's summary.
    summary: str | None = None


#: Runs one tool call (memoised under `key`) and returns what the model reads.
ToolRunner = Callable[[str, ToolCall, int], Awaitable[ToolOutcome]]


@dataclass(frozen=True)
class LoopResult:
    """How the loop ended: the coder's summary and how many model answers it took."""

    summary: str
    steps: int


class StepsExhausted(StreamFailed):
    """The model used every step it had without finishing."""


def _unique_ids(calls: list[ToolCall], step: int) -> list[ToolCall]:
    """The calls with ids unique in the conversation (some servers repeat or omit them)."""
    seen: set[str] = set()
    out = []
    for i, c in enumerate(calls):
        ident = c.id if c.id and c.id not in seen else f"call_s{step}_{i}"
        seen.add(ident)
        out.append(ToolCall(ident, c.name, c.arguments))
    return out


async def run_loop(
    call: Caller,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    run_tool: ToolRunner,
    *,
    stream_id: str,
    round: int,
    max_steps: int,
    on_step: Callable[[int], Awaitable[None]] | None = None,
    role: str = "executor",
    purpose: str = "execute",
    key_prefix: str = "code",
    steps_setting: str = "[code] max_steps",
) -> LoopResult:
    """Run the coder until it finishes; raises `StepsExhausted` past `max_steps` answers.

    `role`, `purpose` and `key_prefix` name another loop on the same tools: the
    orchestrator fixing a stream or a merged result (`fix`), resolving a merge (`merge`);
    `steps_setting` names the setting that bounds it, for the message past `max_steps`.
    """
    conversation = list(messages)
    for step in range(max_steps):
        out = await call(
            role,
            purpose,
            conversation,
            key=f"{key_prefix}:{stream_id}:r{round}:s{step}",
            stream_id=stream_id,
            round=round,
            tools=tools,
        )
        calls = _unique_ids(out.tool_calls, step)
        conversation.append(assistant_message(out.text, calls))
        if not calls:
            return LoopResult(out.text.strip() or "(no summary given)", step + 1)
        summary: str | None = None
        for i, tool_call in enumerate(calls):
            key = f"tool:{key_prefix}:{stream_id}:r{round}:s{step}:{i}"
            outcome = await run_tool(key, tool_call, step)
            conversation.append(tool_message(tool_call.id, outcome.text))
            if outcome.summary is not None and summary is None:
                summary = outcome.summary
        if on_step is not None:
            await on_step(step + 1)
        if summary is not None:
            return LoopResult(summary, step + 1)
    raise StepsExhausted(
        f"the {role} used all {max_steps} steps ({steps_setting}) without finishing"
    )
