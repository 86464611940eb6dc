"""A model call's connection, left open in litellm's pool, keeps nothing of its caller alive.

The event loop keeps, with each open socket and each timer, the context that was current when
it was made. In the engine that context holds LangGraph's config of the step that made the
call, so a pooled connection opened in it kept the finished step (its scratchpad, runtime and
inputs) for as long as the connection stayed open (with 1,000 streams, ~1,000 finished steps),
and the call's cancelled deadline timer kept it until the deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from urllib.parse import urlsplit

import psutil
import pytest
from support import CHEAP, KEY_ENV
from support.simulator import running_simulator

from roles.models.gateway import ModelTier, call_model

#: Stands for LangGraph's `child_runnable_config`: a variable the caller's context holds.
STEP_CONFIG: contextvars.ContextVar[object] = contextvars.ContextVar("test_step_config")


class StepState:
    """What a step's context keeps reachable."""


async def test_a_connection_left_in_the_pool_keeps_nothing_of_its_caller_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-sim-pool")
    with running_simulator({"latency": {"executor": 0.01}}) as sim:
        model_tier = ModelTier(model=CHEAP, api_base=sim.api_base, api_key_env=KEY_ENV)

        async def step() -> weakref.ref[StepState]:
            state = StepState()
            STEP_CONFIG.set(state)
            await call_model(
                model_tier,
                [{"role": "user", "content": "Do the thing."}],
                role="executor",
                purpose="execute",
                task_id="t-pool",
                stream_id="s1",
            )
            return weakref.ref(state)

        # A task of its own, as a LangGraph step is: its context ends with it.
        held = await asyncio.create_task(step())
        # The loop's handle that resumed this coroutine holds the step's task until it returns.
        await asyncio.sleep(0)
        gc.collect()
        port = urlsplit(sim.api_base).port
        pooled = [
            c
            for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        ]
        assert pooled, "the call's connection is no longer open: the test proves nothing"
        assert held() is None, "the pooled connection keeps the finished step's context alive"
