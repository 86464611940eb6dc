"""The one way a task's roles reach a model: `TaskGateway`, the memoised, governed caller.

Around the model gateway (`roles.model_caller.ModelCaller`, or whatever `Caller` a test gives)
it adds what a durable daemon needs, in this order:

1. the step memo: a call whose answer is stored under its key is never made again;
2. a LangGraph `task` per call, so the checkpointer knows the call;
3. `before_call`: a task still marked as waiting for a human works again;
4. a governor slot: every model call of every task passes the daemon-wide limit;
5. the answer is stored under its key inside the task: once that commits, the call is never
   made again, whatever happens next. The stored value is {"text", "data", "tool_calls":
   [{"id", "name", "arguments"}]}: a resumed tool-using loop gets the same tool calls back.

An answer whose write fails (the disk is full) is held in memory (`HeldAnswers`) and written
by the next run of the task instead of asking the model again: it was paid for.

Why a step memo beside the checkpointer: LangGraph identifies a task call by its position in
the order of calls, and parallel streams finish in a different order on every run, so after a
crash a saved result could not always be matched to its call. Every call therefore has a
stable key (`exec:<stream>:r<round>:a<attempt>`, ...), and a resumed task reads the answer
back instead of calling the model again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast

from langgraph.func import task
from pydantic import BaseModel

from daemon.store.store import Store
from roles.calls import Caller, CallOutput, ToolCall
from roles.models.tier import ModelTier
from roles.models.usage import OnRecord

__all__ = ["HeldAnswers", "ModelsFactory", "Slots", "TaskGateway", "task_name"]


class Slots(Protocol):
    """The daemon-wide concurrency limit (the governor): one slot per model call."""

    def slot(self, task_id: str) -> AbstractAsyncContextManager[Any]: ...


#: Makes a task's model gateway from its tiers, its id and its usage recorder
#: (`roles.model_caller.ModelCaller` fits; tests give a scripted caller).
ModelsFactory = Callable[[Mapping[str, ModelTier], str, OnRecord], Caller]


def task_name(key: str) -> str:
    """The LangGraph task name of the call with memo key `key` (stored in checkpoints)."""
    return "call_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


class HeldAnswers:
    """Model answers that came back but could not be saved yet, by (task id, memo key).

    Kept across runs of a task's workflow (the runner runs it again once the disk has room),
    dropped once saved or when the runner is done with the task.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, task_id: str, key: str) -> dict[str, Any] | None:
        return self._held.get((task_id, key))

    def hold(self, task_id: str, key: str, value: dict[str, Any]) -> None:
        self._held[(task_id, key)] = value

    def saved(self, task_id: str, key: str) -> None:
        self._held.pop((task_id, key), None)

    def forget(self, task_id: str) -> None:
        """The runner is done with the task: nothing of it is held any longer."""
        for held in [k for k in self._held if k[0] == task_id]:
            del self._held[held]


class TaskGateway:
    """A `roles.calls.Caller` for one task: memo, LangGraph task, governor, then the models."""

    def __init__(
        self,
        store: Store,
        task_id: str,
        slots: Slots,
        models: Caller,
        before_call: Callable[[], Awaitable[None]],
        held: HeldAnswers | None = None,
        saved_keys: set[str] | None = None,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.slots = slots
        self.models = models
        self.before_call = before_call
        self.held = held if held is not None else HeldAnswers()
        #: The task's step keys when this run began (`Store.run_start`), None if unknown.
        #: Only this gateway writes a call's key (and adds it here), so a key not among them
        #: is not in the memo: its two reads are skipped (a store round trip each, per call).
        #: A stream's done-marker is read once per run, before the stream writes it: the same
        #: holds for it (`saved`).
        self._saved_keys = saved_keys
        #: Model calls in flight, and an event set whenever there are none.
        self._flying = 0
        self._landed = asyncio.Event()
        self._landed.set()

    async def settled(self) -> None:
        """Return once no model call of this task is in flight."""
        await self._landed.wait()

    async def saved(self, key: str) -> Any | None:
        """The memo's value for `key`, None if there is none; not read for a key that was
        not saved when the run began, nor by this gateway since (see `_saved_keys`)."""
        if self._saved_keys is not None and key not in self._saved_keys:
            return None
        return await self.store.get_step(self.task_id, key)

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
        cached = await self.saved(key)
        if cached is not None:
            return _output(cached)

        async def body(_key: str) -> dict[str, Any]:
            again = await self.saved(key)
            if again is not None:
                return dict(again)
            value = self.held.get(self.task_id, key)
            if value is None:
                await self.before_call()
                self._flying += 1
                self._landed.clear()
                try:
                    async with self.slots.slot(self.task_id):
                        out = await self.models(
                            role,
                            purpose,
                            messages,
                            key=key,
                            stream_id=stream_id,
                            round=round,
                            response_model=response_model,
                            tools=tools,
                        )
                finally:
                    self._flying -= 1
                    if not self._flying:
                        self._landed.set()
                value = {
                    "text": out.text,
                    "data": out.data,
                    "tool_calls": [c.as_dict() for c in out.tool_calls],
                }
                # Held until written: a write that fails (a full disk) must not cost a call.
                self.held.hold(self.task_id, key, value)
            # Written inside the task: once this commits, the call is never made again.
            await self.store.put_step(self.task_id, key, value)
            if self._saved_keys is not None:
                self._saved_keys.add(key)
            self.held.saved(self.task_id, key)
            return value

        # LangGraph's `task` is typed for its decorator use; here it wraps a closure per call.
        value: dict[str, Any] = await cast(Any, task)(name=task_name(key))(body)(key)
        return _output(value)


def _output(value: Mapping[str, Any]) -> CallOutput:
    """A stored answer as the caller's output (answers stored before tools have none)."""
    calls = [ToolCall.from_dict(c) for c in value.get("tool_calls") or []]
    return CallOutput(value["text"], value.get("data"), calls)
