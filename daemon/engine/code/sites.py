"""Where a code stream works: its worktree, its tools and its commands, here or on a cluster node.

`CodeStreams` drives a stream the same way wherever it works (the loop, the memo, the events);
a `StreamSite` is the part that differs. `LocalSites` (the default) gives each stream a worktree
of the user's repository under tierd's home and runs its commands in bubblewrap on this
machine. `daemon.engine.code.ray` gives the same surface on a Ray cluster, where a site also
keeps its worktree's state durable after every step that may change it (`snapshot`), so that a
stream can go on from its last saved step on another node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from daemon.engine.code.git import git
from daemon.engine.code.paths import PathGlobs
from daemon.engine.code.preparation import Preparation, prepare_worktree
from daemon.engine.code.sandbox import CommandResult, SandboxPolicy, run_sandboxed
from daemon.engine.code.settings import CodeSettings
from daemon.engine.code.setup import run_setup
from daemon.engine.code.tools import ToolResult, Workspace
from daemon.engine.code.toolspec import call_tool
from daemon.engine.code.worktrees import CommitResult, Worktree, WorktreeManager

__all__ = [
    "LocalSite",
    "LocalSites",
    "SiteRequest",
    "StreamSite",
    "StreamSites",
    "restore_snapshot",
    "workspace_for",
]


@dataclass(frozen=True)
class SiteRequest:
    """What a stream's site is made from."""

    task_id: str
    stream_id: str
    #: The user's repository (the daemon's side: branches are fetched into it).
    repo: Path
    #: The task's base commit, and the branches of the streams this one depends on.
    base: str
    depends_on: tuple[str, ...]
    ownership: tuple[str, ...]
    settings: CodeSettings
    #: Directories commands must not read (tierd's home).
    hide: tuple[Path, ...]
    #: The worktree's state as last saved with a step (a site that keeps one), else None.
    snapshot: str | None = None


class StreamSite(Protocol):
    """One stream's worktree and what acts on it."""

    @property
    def location(self) -> str:
        """Where the worktree is, as the stream's record shows it."""
        ...

    @property
    def branch(self) -> str: ...

    @property
    def start_commit(self) -> str: ...

    @property
    def workspace(self) -> Workspace:
        """The tools' rules (ownership, commands): what the model is offered."""
        ...

    @property
    def snapshot(self) -> str | None:
        """The worktree's state after the last step, saved where the stream can resume from
        it elsewhere (a commit in the user's repository); None where the worktree itself
        lasts (this machine) or nothing changed since the last commit."""
        ...

    async def setup(self, command: str) -> dict[str, Any]:
        """Run the setup command in the worktree; its record (`setup.run_setup`)."""
        ...

    async def setup_again(self, done: dict[str, Any]) -> dict[str, Any] | None:
        """The setup ran before (`done`): make this worktree ready if it is a new one (a
        stream moved to another node); the new record, or None when nothing ran."""
        ...

    async def tool(self, name: str, arguments: str) -> ToolResult:
        """Run one tool call the model made."""
        ...

    async def commit(self, summary: str, *, exclude: tuple[str, ...], by: str = "") -> CommitResult:
        """Commit the worktree on the stream's branch (in the user's repository once done)."""
        ...

    async def run(self, command: str) -> CommandResult:
        """Run `command` (tierd's own test run) in the worktree, in the sandbox."""
        ...

    def commit_excludes(self) -> tuple[str, ...]:
        """Paths that are tierd's, never the stream's work (linked dependency dirs)."""
        ...

    async def rest(self) -> None:
        """The round is over and committed: free what the worktree holds elsewhere (a node's
        CPUs, while the stream waits for its review); the next call makes it again."""
        ...


class StreamSites(Protocol):
    """Makes (or finds again) a stream's site; lets a task's sites go when it ends."""

    async def open(self, request: SiteRequest) -> StreamSite: ...

    async def release(self, task_id: str) -> None:
        """The task's run is over (or paused): free what its sites hold elsewhere."""
        ...

    async def describe(self) -> dict[str, Any]:
        """The backend, as `daemon/status` shows it (`ExecutorsView`)."""
        ...


async def restore_snapshot(wt: Worktree, snapshot: str) -> None:
    """Put a saved state's files in a clean worktree, uncommitted (a stream that worked on a
    cluster, taken on here after `[executors] backend` changed). A worktree with changes
    of its own is this machine's: left as it is."""
    env = wt.git_env()
    status = await git(wt.path, "status", "--porcelain", "--untracked-files=all", env=env)
    if status.out.strip():
        return
    await git(wt.path, "read-tree", "-u", "--reset", snapshot, env=env)
    await git(wt.path, "reset", "--quiet", env=env)


def workspace_for(
    request: SiteRequest, root: Path, git_dir: Path, sandbox: SandboxPolicy
) -> Workspace:
    """The tools' workspace of a stream's worktree at `root`."""
    s = request.settings
    return Workspace(
        root=root,
        git_dir=git_dir,
        ownership=PathGlobs(request.ownership),
        secrets=s.secrets(),
        sandbox=sandbox,
        test_command=s.test_command,
        lint_command=s.lint_command,
        allow_shell=s.allow_shell,
    )


@dataclass
class LocalSite:
    """A stream's worktree of the user's repository on this machine."""

    manager: WorktreeManager
    wt: Worktree
    prep: Preparation
    workspace: Workspace
    setup_policy: SandboxPolicy
    snapshot: str | None = None

    @property
    def location(self) -> str:
        return str(self.wt.path)

    @property
    def branch(self) -> str:
        return self.wt.branch

    @property
    def start_commit(self) -> str:
        return self.wt.start_commit

    async def setup(self, command: str) -> dict[str, Any]:
        return await run_setup(command, self.wt, self.setup_policy)

    async def setup_again(self, done: dict[str, Any]) -> dict[str, Any] | None:
        return None  # the worktree lasts: what the setup made is still there

    async def tool(self, name: str, arguments: str) -> ToolResult:
        return await call_tool(self.workspace, name, arguments)

    async def commit(self, summary: str, *, exclude: tuple[str, ...], by: str = "") -> CommitResult:
        return await self.manager.commit(self.wt, summary, exclude=exclude, by=by)

    async def run(self, command: str) -> CommandResult:
        return await run_sandboxed(command, self.wt.path, self.workspace.sandbox)

    def commit_excludes(self) -> tuple[str, ...]:
        return self.prep.commit_excludes()

    async def rest(self) -> None:
        return None  # a worktree on this machine holds nothing while it waits


class LocalSites:
    """Streams work in worktrees under `root` (tierd's home), on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def open(self, request: SiteRequest) -> LocalSite:
        manager = WorktreeManager(request.repo, self.root)
        wt = await manager.create(
            request.task_id, request.stream_id, base=request.base, depends_on=request.depends_on
        )
        if request.snapshot is not None:
            await restore_snapshot(wt, request.snapshot)
        s = request.settings
        prep = await prepare_worktree(request.repo, wt.path, link_dirs=s.link_dirs)
        sandbox = prep.sandbox(wt.path, s.command_policy(request.hide))
        return LocalSite(
            manager,
            wt,
            prep,
            workspace_for(request, wt.path, wt.git_dir, sandbox),
            prep.sandbox(wt.path, s.setup_policy(request.hide)),
        )

    async def release(self, task_id: str) -> None:
        return None  # worktrees are removed with the task (`WorktreeManager.remove_task`)

    async def describe(self) -> dict[str, Any]:
        return {"backend": "local"}
