"""The states a task goes through, and the one place that says which moves are legal."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    queued = "queued"
    planning = "planning"
    running = "running"
    reviewing = "reviewing"
    merging = "merging"
    input_required = "input_required"
    awaiting_approval = "awaiting_approval"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"


TERMINAL = frozenset({TaskState.completed, TaskState.failed, TaskState.canceled})

_ANY_LIVE_TO = {TaskState.canceled, TaskState.failed}
_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.queued: frozenset({TaskState.planning}),
    TaskState.planning: frozenset({TaskState.running, TaskState.input_required}),
    # running -> planning: a failed stream may send the task back to be re-planned.
    TaskState.running: frozenset(
        {TaskState.reviewing, TaskState.input_required, TaskState.planning, TaskState.merging}
    ),
    TaskState.reviewing: frozenset(
        {TaskState.running, TaskState.merging, TaskState.input_required}
    ),
    TaskState.merging: frozenset({TaskState.completed, TaskState.awaiting_approval}),
    TaskState.input_required: frozenset(
        {TaskState.planning, TaskState.running, TaskState.reviewing, TaskState.merging}
    ),
    # A rejected result goes back to the orchestrator for a revision.
    TaskState.awaiting_approval: frozenset({TaskState.completed, TaskState.merging}),
}


class IllegalTransition(RuntimeError):
    def __init__(self, current: TaskState, new: TaskState) -> None:
        super().__init__(f"illegal task transition {current} -> {new}")
        self.current = current
        self.new = new


def can_move(current: TaskState, new: TaskState) -> bool:
    if current in TERMINAL:
        return False
    if current == new:
        return True
    return new in _ANY_LIVE_TO or new in _MOVES.get(current, frozenset())


def check_move(current: str | TaskState, new: str | TaskState) -> TaskState:
    """Return the new state, or raise IllegalTransition."""
    cur, nxt = TaskState(current), TaskState(new)
    if not can_move(cur, nxt):
        raise IllegalTransition(cur, nxt)
    return nxt
