"""Run a command for a stream under bubblewrap: it can change its worktree and nothing else.

The sandbox (checked with bubblewrap 0.8): the whole filesystem read-only (`--ro-bind / /`), a
fresh `/dev`, `/proc` and a private `/tmp`; the worktree bound writable after `/tmp` (worktrees
may live under /tmp); the `read_only` paths (shared dependency directories, the repository's git
directory) bound read-only after that, so a worktree under /tmp can still reach them; `hide`
paths covered by empty directories (the daemon's home, say). Every namespace is unshared, so
there is no network (only a setup command may get it, `network=True`); the environment is
cleared to a minimal PATH, HOME and LANG, so no API key or daemon variable gets in;
`--die-with-parent --new-session` and a process group per command, so a timeout or a cancelled
await kills the command and all it started.

Without bubblewrap, commands are refused with `SandboxUnavailable` naming the package, unless the
user chose `mode="none"` (the command runs directly, in its worktree, with the cleared
environment, but can read, write and connect anywhere the daemon can).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from daemon.engine.code.process import run_process

__all__ = [
    "BASE_PATH",
    "CommandResult",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxUnavailable",
    "bwrap_argv",
    "check_sandbox",
    "run_sandboxed",
    "sandbox_env",
]

SandboxMode = Literal["bwrap", "none"]
#: The PATH a command sees, after the policy's own directories (e.g. a linked `.venv/bin`).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: HOME inside the sandbox: the private /tmp, so caches written there vanish with the command.
SANDBOX_HOME = "/tmp"
PACKAGE = "bubblewrap"


class SandboxUnavailable(RuntimeError):
    """Commands cannot be sandboxed here: bubblewrap is missing or cannot start."""


@dataclass(frozen=True)
class SandboxPolicy:
    """How commands of one worktree run."""

    mode: SandboxMode = "bwrap"
    #: Wall time of one command; past it the command's process group is killed.
    timeout_s: float = 600.0
    #: Output kept (head and tail, stdout and stderr together); the rest is left out with a note.
    max_output_bytes: int = 32_000
    #: Network for this command (a setup command with `setup_network`); never for the tools.
    network: bool = False
    #: Paths bound read-only at the same place (shared dependency dirs, the git directory).
    read_only: tuple[Path, ...] = ()
    #: Paths covered by an empty directory inside the sandbox (what commands must not read).
    hide: tuple[Path, ...] = ()
    #: Directories put before `BASE_PATH` (e.g. the worktree's `.venv/bin`).
    path_dirs: tuple[Path, ...] = ()
    #: Extra environment variables (never secrets: they would reach the command's output).
    env: Mapping[str, str] = field(default_factory=dict)
    #: The bubblewrap program: a name looked up on PATH, or a path.
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class CommandResult:
    """How a sandboxed command ended, with its output (stdout and stderr merged, bounded)."""

    command: str
    exit_code: int
    output: str
    duration_s: float
    timed_out: bool
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        """One line for a person or a model: how it ended and how long it took."""
        if self.timed_out:
            return f"killed after {self.duration_s:.1f} s (time limit)"
        return f"exit code {self.exit_code} after {self.duration_s:.1f} s"


def _find_bwrap(policy: SandboxPolicy) -> str:
    found = shutil.which(policy.bwrap)
    if found is None:
        raise SandboxUnavailable(
            f"{PACKAGE} is not installed (no {policy.bwrap!r} program): install the package "
            f"'{PACKAGE}' (e.g. apt-get install -y {PACKAGE}), or set [code] sandbox = \"none\" "
            "to run commands without a sandbox"
        )
    return found


def sandbox_env(policy: SandboxPolicy, home: str = SANDBOX_HOME) -> dict[str, str]:
    """The whole environment of a command: nothing of the daemon's own."""
    path = ":".join([*(str(p) for p in policy.path_dirs), BASE_PATH])
    env = {"PATH": path, "HOME": home, "LANG": "C.UTF-8", "TMPDIR": "/tmp", "TERM": "dumb"}
    env.update(policy.env)
    return env


def bwrap_argv(bwrap: str, worktree: Path, argv: Sequence[str], policy: SandboxPolicy) -> list[str]:
    """The bubblewrap command line that runs `argv` in `worktree` under `policy`."""
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for hidden in policy.hide:
        if hidden.is_dir():
            args += ["--tmpfs", str(hidden)]
    # The worktree after /tmp and the hidden paths (it may be under either), the read-only
    # paths last: bound after a writable parent they stay read-only.
    args += ["--bind", str(worktree), str(worktree)]
    for path in policy.read_only:
        args += ["--ro-bind-try", str(path), str(path)]
    args += ["--chdir", str(worktree), "--unshare-all"]
    if policy.network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session", "--clearenv"]
    for key, value in sandbox_env(policy).items():
        args += ["--setenv", key, value]
    return [*args, "--", *argv]


def _argv(command: str | Sequence[str]) -> tuple[str, list[str]]:
    if isinstance(command, str):
        return command, ["/bin/sh", "-c", command]
    return " ".join(command), list(command)


async def run_sandboxed(
    command: str | Sequence[str], worktree: Path, policy: SandboxPolicy
) -> CommandResult:
    """Run `command` (a shell line, or an argv) in `worktree` under `policy`.

    Cancelling the await kills the command. Raises `SandboxUnavailable` when bubblewrap is
    missing and the policy did not choose `mode="none"`.
    """
    text, argv = _argv(command)
    wt = await asyncio.to_thread(worktree.resolve)
    if policy.mode == "none":
        # No private /tmp here: HOME is the system's temporary directory.
        full, env, cwd = argv, sandbox_env(policy, home="/tmp"), wt
    else:
        bwrap = _find_bwrap(policy)
        full = await asyncio.to_thread(bwrap_argv, bwrap, wt, argv, policy)
        env, cwd = {"PATH": BASE_PATH}, None
    result = await run_process(
        full,
        timeout_s=policy.timeout_s,
        cwd=cwd,
        env=env,
        max_output_bytes=policy.max_output_bytes,
        merge_stderr=True,
    )
    output = result.stdout.decode("utf-8", errors="replace")
    if result.timed_out:
        output += f"\n[killed: the command ran longer than {policy.timeout_s:g} s]"
    return CommandResult(
        command=text,
        exit_code=result.exit_code,
        output=output,
        duration_s=result.duration_s,
        timed_out=result.timed_out,
        truncated=result.omitted_bytes > 0,
    )


async def check_sandbox(policy: SandboxPolicy, workdir: Path) -> None:
    """Raise `SandboxUnavailable` unless a trivial command runs under `policy` in `workdir`
    (bubblewrap present and allowed to make its namespaces here)."""
    if policy.mode == "none":
        return
    probe = await run_sandboxed(["/bin/true"], workdir, policy)
    if not probe.ok:
        raise SandboxUnavailable(
            f"{PACKAGE} cannot start a sandbox here ({probe.describe()}): {probe.output.strip()}"
        )
