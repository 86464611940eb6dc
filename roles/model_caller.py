"""The model gateway roles are run through: a `Caller` whose answers come from model tiers.

Each call goes to the tier of the role that makes it (`tiers["executor"]`, ...) through
`call_model`, and every attempt's `UsageRecord` goes to `on_record`. This is the whole path
from a role to a model; what a daemon adds around it (the step memo, the concurrency
governor, the usage log) is `daemon.engine.gateway`, and the bench's baselines use it as it
is. A role never knows which it was given: tests hand roles a scripted caller instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from roles.calls import CallOutput
from roles.models.gateway import ModelTier, OnRecord, call_model

__all__ = ["ModelCaller"]


class ModelCaller:
    """A `roles.calls.Caller` straight to the tiers: no memo, no governor, no store."""

    def __init__(
        self, tiers: Mapping[str, ModelTier], task_id: str, on_record: OnRecord | None = None
    ) -> None:
        self.tiers = tiers
        self.task_id = task_id
        self.on_record = on_record

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
    ) -> CallOutput:
        result = await call_model(
            self.tiers[role],
            messages,
            role=role,
            purpose=purpose,
            task_id=self.task_id,
            stream_id=stream_id,
            round=round,
            response_model=response_model,
            on_record=self.on_record,
            step=key,
            tools=tools,
        )
        data = result.parsed.model_dump() if result.parsed is not None else None
        return CallOutput(result.text, data, result.tool_calls)
