"""An ended task's clean-up outlives the cancellation of its run: a stopping daemon waits."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from daemon.engine.housekeeping import Housekeeping


class _SlowCleanup:
    """The one part of a workflow housekeeping uses: a clean-up that takes a moment."""

    def __init__(self) -> None:
        self.cleaned: list[str] = []

    async def cleanup_code(self, task_id: str) -> None:
        await asyncio.sleep(0.2)  # git removing worktrees and branches
        self.cleaned.append(task_id)


async def test_a_stop_during_an_ended_tasks_clean_up_lets_it_finish() -> None:
    workflow = _SlowCleanup()

    async def get() -> Any:
        return workflow

    housekeeping = Housekeeping(get)
    run = asyncio.create_task(housekeeping.ended(cast(Any, workflow), "t1"))
    await asyncio.sleep(0.05)
    run.cancel()  # the daemon stops: the runner cancels every run, this one in its clean-up
    await asyncio.gather(run, return_exceptions=True)
    assert workflow.cleaned == []
    await housekeeping.stop()
    assert workflow.cleaned == ["t1"]
