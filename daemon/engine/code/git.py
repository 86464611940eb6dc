"""Run git for code tasks without touching the user's working tree, index or hooks.

Every call is `git -C DIR ...` with a fixed set of safety switches: the user's hooks never run
(a post-checkout hook on every worktree add would be surprising, a pre-commit hook slow), no
optional locks (so reading the user's repository never refreshes their index), no automatic gc
or maintenance, no commit signing (which could wait on a passphrase prompt forever), no
terminal prompts. `GIT_*` variables of the daemon's own environment are dropped, so a daemon
started from inside a git hook cannot point these commands at another repository or index;
nor does git get any other daemon variable (API keys stay in the daemon).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.engine.code.process import run_process

__all__ = ["GitError", "GitOutput", "git", "git_env", "identity_env", "worktree_env"]

_SWITCHES = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "commit.gpgsign=false",
    "-c", "advice.detachedHead=false",
)  # fmt: skip
#: The daemon's variables git sees: programs, the user's git configuration, temporary files.
_PASSED = ("PATH", "HOME", "XDG_CONFIG_HOME", "TMPDIR", "USER", "LOGNAME")
#: A git command that takes longer than this is stuck (a lock, a filter waiting for input).
DEFAULT_TIMEOUT_S = 120.0


class GitError(RuntimeError):
    """A git command failed; the message carries its arguments and what it printed."""

    def __init__(self, args: tuple[str, ...], exit_code: int, stderr: str) -> None:
        self.git_args = args
        self.exit_code = exit_code
        self.stderr = stderr
        detail = stderr.strip() or f"exit code {exit_code}"
        super().__init__(f"git {' '.join(args)}: {detail}")


@dataclass(frozen=True)
class GitOutput:
    """What one git command printed (decoded; undecodable bytes kept as surrogates)."""

    exit_code: int
    out: str
    err: str
    #: True when output past `max_output_bytes` was left out.
    truncated: bool = False


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What git needs of the daemon's environment (where to find programs and the user's git
    config), nothing else (no API keys), with the switches that keep git quiet."""
    env = {k: os.environ[k] for k in _PASSED if k in os.environ}
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
    )
    if extra:
        env.update(extra)
    return env


def identity_env(name: str, email: str = "tierd@localhost") -> dict[str, str]:
    """Author and committer for commits tierd makes (the user's git identity is not needed)."""
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def worktree_env(git_dir: Path, work_tree: Path) -> dict[str, str]:
    """Variables that make git use this worktree's own git directory, named by the repository.

    A command in the sandbox can rewrite the worktree's `.git` file (the worktree is writable):
    pointed at a directory of its making, with a `core.fsmonitor` in its config, it would run
    code outside the sandbox at the daemon's next `git -C worktree ...`. With `GIT_DIR` set,
    git never reads that file.
    """
    return {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(work_tree)}


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


async def git(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_output_bytes: int | None = None,
) -> GitOutput:
    """Run `git -C cwd ARGS`; with `check`, a non-zero exit raises `GitError`.

    `env` adds variables (e.g. `GIT_INDEX_FILE` for a private index, an identity);
    `max_output_bytes` keeps only the first bytes of each output (for searches).
    """
    result = await run_process(
        ["git", "-C", str(cwd), *_SWITCHES, *args],
        timeout_s=timeout_s,
        env=git_env(env),
        stdin=stdin,
        max_output_bytes=max_output_bytes,
        head_only=True,
    )
    output = GitOutput(
        result.exit_code,
        _decode(result.stdout),
        _decode(result.stderr),
        truncated=result.omitted_bytes > 0,
    )
    if result.timed_out:
        raise GitError(args, result.exit_code, f"timed out after {timeout_s:.0f} s")
    if check and result.exit_code != 0:
        raise GitError(args, result.exit_code, output.err or output.out)
    return output
