"""A worktree's setup: `[code] setup_command`, run once per worktree in the sandbox.

`git worktree add` carries tracked files only; the setup command (e.g. `uv sync --frozen`,
`npm ci`) makes the worktree runnable before its executor starts (and before tierd tests a
merged result). Its output and time are recorded; what it creates or changes is the
environment's, never committed as the stream's work (`artifacts`). Durable like any step.
"""

from __future__ import annotations

from typing import Any

from daemon.engine.code.git import git
from daemon.engine.code.sandbox import SandboxPolicy, run_sandboxed
from daemon.engine.code.worktrees import Worktree

__all__ = ["SETUP_TAIL_CHARS", "changed_paths", "run_setup", "setup_failure"]

#: Output of a setup kept in the record (its tail: where the error is).
SETUP_TAIL_CHARS = 4000


async def changed_paths(wt: Worktree) -> list[str]:
    """Paths new or changed in the worktree (not those git ignores)."""
    out = await git(
        wt.path, "status", "--porcelain=v1", "-z", "--untracked-files=all", env=wt.git_env()
    )
    entries = [e for e in out.out.split("\0") if e]
    # Each entry is "XY path"; a rename's second path follows as its own entry (no "XY ").
    return [e[3:] for e in entries if len(e) > 3 and e[2] == " "]


async def run_setup(command: str, wt: Worktree, policy: SandboxPolicy) -> dict[str, Any]:
    """Run the setup command in `wt`; the record of how it went."""
    ran = await run_sandboxed(command, wt.path, policy)
    return {
        "command": command,
        "exit_code": ran.exit_code,
        "duration_s": round(ran.duration_s, 3),
        "timed_out": ran.timed_out,
        "output_tail": ran.output[-SETUP_TAIL_CHARS:],
        "artifacts": await changed_paths(wt),
    }


def setup_failure(done: dict[str, Any]) -> str | None:
    """Why a setup record is a failure, with its output; None when it succeeded."""
    if done["exit_code"] == 0 and not done.get("timed_out"):
        return None
    how = "timed out" if done.get("timed_out") else f"exited with {done['exit_code']}"
    return (
        f"the setup command {done['command']!r} {how}; its output ends with:\n{done['output_tail']}"
    )
