"""Where a running task is in its life: `TaskStates` moves it, only along legal moves.

The engine's work goes through phases (running, reviewing, merging); a task that waits for a
human (input_required, awaiting_approval) leaves the wait only when a human's action, the
work it unblocks, a failure or a cancellation moves it. A resumed task replays its finished
steps and passes phases it had already left: a move backwards is ignored, not an error.
"""

from __future__ import annotations

import logging
from typing import Any

from daemon.store.states import TaskState, can_move
from daemon.store.store import Store

__all__ = ["WAITING", "TaskStates"]

log = logging.getLogger("tierd.tasks")

#: Task states in which a task waits for a human. Only a human's action (an answer, a
#: decision), the work that action unblocks, a failure or a cancellation moves a task out.
WAITING = frozenset({TaskState.input_required, TaskState.awaiting_approval})


def may_enter(current: str, state: TaskState, *, leave_wait: bool = False) -> bool:
    """Whether a task in `current` moves to `state`: a legal move, and not out of a wait for
    a human unless `leave_wait` (see `TaskStates.move`)."""
    now = TaskState(current)
    return can_move(now, state) and (now not in WAITING or leave_wait)


class TaskStates:
    """The state of one task in the store, and the phase its work is in."""

    def __init__(self, store: Store, task_id: str) -> None:
        self.store = store
        self.task_id = task_id
        #: Where the work is (running, reviewing, merging): where a task that waited for a
        #: human goes back to when the work resumes.
        self.phase = TaskState.running

    async def enter(self, phase: TaskState, reason: str | None = None) -> None:
        """The work moves on to `phase`: remember it and move the task there."""
        self.phase = phase
        await self.move(phase, reason=reason)

    async def move(
        self,
        state: TaskState,
        reason: str | None = None,
        *,
        leave_wait: bool = False,
        **fields: Any,
    ) -> bool:
        """Move the task to `state` if that is a legal move; True if the state changed.

        A resumed task replays its finished steps from the memo and passes phases it had
        already left (running while it was merging): it keeps its later state. A task that
        waits for a human keeps waiting unless `leave_wait`: a replay must not make a
        waiting task look busy (and then announce the same wait again).
        """

        def may_move(current: str) -> bool:
            return may_enter(current, state, leave_wait=leave_wait)

        previous, moved = await self.store.advance(
            self.task_id, state, may_move, reason=reason, **fields
        )
        if moved:
            log.info(
                "task %s: %s -> %s%s",
                self.task_id,
                previous,
                state,
                f" ({reason})" if reason else "",
            )
        return moved
