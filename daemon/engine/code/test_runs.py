"""tierd's own run of the project's test command: the evidence a review and the merge go by.

Nothing is accepted on a model's word when a test can say it: after a coder finishes, and on
the merged result, tierd runs `[code] test_command` itself, in the sandbox, on that worktree.
Each run is a step like any other: saved under its key before it counts, so a resumed task
reads it back instead of running it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from daemon.engine.code.sandbox import CommandResult
from daemon.store.store import Store

__all__ = ["TEST_OUTPUT_CHARS", "failed", "test_run"]

#: Output of a test run kept (its tail: where the failures are).
TEST_OUTPUT_CHARS = 6000


async def test_run(
    store: Store,
    task_id: str,
    key: str,
    command: str,
    run: Callable[[str], Awaitable[CommandResult]],
) -> dict[str, Any] | None:
    """The test command's run (memoised under `key`) by `run`, which runs it sandboxed in
    the worktree; None without a command."""
    if not command:
        return None
    saved = await store.get_step(task_id, key)
    if saved is not None:
        return dict(saved)
    ran = await run(command)
    done = {
        "command": command,
        "name": "test",
        "exit_code": None if ran.timed_out else ran.exit_code,
        "duration_s": round(ran.duration_s, 3),
        "output": ran.output[-TEST_OUTPUT_CHARS:],
    }
    await store.put_step(task_id, key, done)
    return done


def failed(run: dict[str, Any] | None) -> bool:
    """Whether a test run says the tests fail (no run at all says nothing)."""
    return run is not None and run.get("exit_code") != 0
