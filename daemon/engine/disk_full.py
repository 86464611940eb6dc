"""A full disk under a running task: recognising it, and how long to wait for room.

A write that fails for want of space (the store's `StoreFull`, or the checkpointer's own
SQLite error for it) does not make a task wrong: nothing half-written is kept and the same
write succeeds once there is room. So the runner does not fail the task; it runs the task's
workflow again after a pause (finished steps replay from the memo), with a growing pause, for
`RoomWait.patience_s` in all; only then does it fail the task, with the reason recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.engine.notify import Notifier
from daemon.store.errors import StoreFull, as_store_full
from daemon.store.store import Store

__all__ = ["RoomWait", "fail_when_written", "store_full"]

log = logging.getLogger("tierd.runner")

#: How the checkpointer's errors name where they happened (the store's own name the store).
CHECKPOINTS = "the checkpoint database"


def store_full(exc: BaseException | None, where: str = CHECKPOINTS) -> StoreFull | None:
    """The full (or failing) disk behind `exc`, if that is what it is, else None.

    Looks through the chain of causes and groups: LangGraph or an engine part may have raised
    something else on the way out of a failed write.
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        full = as_store_full(current, where)
        if full is not None:
            return full
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend((current.__cause__, current.__context__))
    return None


@dataclass(frozen=True)
class RoomWait:
    """The pauses between runs of a task's workflow while its store's disk is full.

    Why these values: a person who sees "disk full" in the log needs minutes to free space,
    so five minutes of patience lets a task survive that without a restart; the pause grows
    from a second to half a minute, so a brief squeeze costs a second and a long one costs
    one look every 30 s. Past the patience the task fails, saying why.
    """

    first_s: float = 1.0
    longest_s: float = 30.0
    patience_s: float = 300.0

    def delays(self) -> Iterator[float]:
        """The pauses, doubling up to `longest_s`, adding up to at most `patience_s`."""
        waited, delay = 0.0, self.first_s
        while waited + delay <= self.patience_s:
            yield delay
            waited += delay
            delay = min(delay * 2, self.longest_s)


async def fail_when_written(
    store: Store, task_id: str, reason: str, notifier: Notifier, room: RoomWait
) -> None:
    """Fail the task with `reason`, as soon as the disk takes the write.

    Unbounded, but never silent or stuck: the task cannot be marked anything while no
    write succeeds, each look is logged, and the daemon's stop ends the wait (the next
    start runs the task again).
    """
    from daemon.engine.ending import fail_task

    log.error("task %s: %s; failing it", task_id, reason)
    while True:
        try:
            await fail_task(store, task_id, reason, notifier)
            return
        except Exception as exc:
            if store_full(exc) is None:
                raise
            log.warning(
                "task %s: cannot record its failure yet (%s); trying again in %.0fs",
                task_id,
                exc,
                room.longest_s,
            )
            await asyncio.sleep(room.longest_s)
