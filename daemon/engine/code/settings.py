"""A code task's settings, typed: `CodeSettings`, from the `code.*` keys a task stored.

Read once when the task's run starts (like every task setting, they are the values the task
was submitted with, whatever the config files say later) and handed to the parts of a code
stream: the sandbox policy of its commands, the workspace of its tools, the bounds of its loop.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from daemon.engine.code.paths import PathGlobs
from daemon.engine.code.sandbox import SandboxMode, SandboxPolicy

__all__ = ["COMMAND_ENV", "CodeSettings"]

#: Set for every command: Python's bytecode caches would otherwise land in the worktree and
#: be committed as the stream's work.
COMMAND_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
#: Bound read-only into every sandbox: tierd's own Python environment, so a command run with
#: its interpreter works wherever tierd is installed (under /tmp too, which the sandbox
#: replaces with a private, empty one).
OWN_PYTHON = tuple(dict.fromkeys(Path(p) for p in (sys.prefix, sys.base_prefix)))


@dataclass(frozen=True)
class CodeSettings:
    """The `[code]` table of a task's settings."""

    test_command: str
    lint_command: str
    setup_command: str
    setup_network: bool
    allow_shell: bool
    sandbox: SandboxMode
    max_steps: int
    #: Steps the orchestrator may take to fix a stream itself (a review's "fix" verdict).
    fix_max_steps: int
    #: Steps the orchestrator may take at the merge point (a conflict, failing merged tests).
    merge_max_steps: int
    command_timeout_s: float
    setup_timeout_s: float
    max_output_bytes: int
    stream_time_s: float
    keep_worktrees: bool
    link_dirs: tuple[str, ...]
    secret_globs: tuple[str, ...]
    max_tree_paths: int

    @classmethod
    def from_flat(cls, s: Mapping[str, Any]) -> CodeSettings:
        """From flat keys ("code.max_steps", ...); every key must be there (shipped defaults)."""
        return cls(
            test_command=str(s["code.test_command"]).strip(),
            lint_command=str(s["code.lint_command"]).strip(),
            setup_command=str(s["code.setup_command"]).strip(),
            setup_network=bool(s["code.setup_network"]),
            allow_shell=bool(s["code.allow_shell"]),
            sandbox=cast(SandboxMode, s["code.sandbox"]),
            max_steps=int(s["code.max_steps"]),
            fix_max_steps=int(s["code.fix_max_steps"]),
            merge_max_steps=int(s["code.merge_max_steps"]),
            command_timeout_s=float(s["code.command_timeout_s"]),
            setup_timeout_s=float(s["code.setup_timeout_s"]),
            max_output_bytes=int(s["code.max_output_bytes"]),
            stream_time_s=float(s["code.stream_time_s"]),
            keep_worktrees=bool(s["code.keep_worktrees"]),
            link_dirs=tuple(str(d) for d in s["code.link_dirs"]),
            secret_globs=tuple(str(g) for g in s["code.secret_globs"]),
            max_tree_paths=int(s["code.max_tree_paths"]),
        )

    def secrets(self) -> PathGlobs:
        return PathGlobs(self.secret_globs)

    def command_policy(self, hide: tuple[Path, ...]) -> SandboxPolicy:
        """The sandbox of the executor's commands (never with network)."""
        return SandboxPolicy(
            mode=self.sandbox,
            timeout_s=self.command_timeout_s,
            max_output_bytes=self.max_output_bytes,
            hide=hide,
            env=COMMAND_ENV,
            read_only=OWN_PYTHON,
        )

    def setup_policy(self, hide: tuple[Path, ...]) -> SandboxPolicy:
        """The sandbox of the setup command: its own time limit, network only if allowed."""
        return SandboxPolicy(
            mode=self.sandbox,
            timeout_s=self.setup_timeout_s,
            max_output_bytes=self.max_output_bytes,
            network=self.setup_network,
            hide=hide,
            env=COMMAND_ENV,
            read_only=OWN_PYTHON,
        )
