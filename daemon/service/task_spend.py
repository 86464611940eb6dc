"""What a task has spent so far: the sum of its model calls' costs, before its report exists.

A task's report (with its cost) is written when the task ends; a client following a live task
(MCP's wait_task) wants the dollars spent up to now. The usage log has one row per model call,
so the sum of its rows is that number.
"""

from __future__ import annotations

from daemon.store.store import Store


async def spent_usd(store: Store, task_id: str) -> float:
    """Dollars the task's model calls have cost so far (0.0 before its first call)."""
    rows = await store.usage_of(task_id)
    return round(sum(row.cost_usd for row in rows), 6)
