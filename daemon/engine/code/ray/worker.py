"""A code stream's worktree on a cluster node: the Ray actor that makes it and acts on it.

`StreamWorker` runs in a Ray worker process on the node the driver placed it on (`bridge_main`
makes it a remote class; nothing here imports Ray at module level). It keeps the stream's own
bare repository and worktree under the node's work directory, laid out as tierd's worktrees are
on the daemon's machine (`WorktreeManager`), and runs the same tools and the same sandbox.

What leaves the node is git data, never a path: after every tool call that may change files the
worker records the worktree as a snapshot commit (chained on the previous one, on a private
index so the worktree's own index is untouched) and returns it as an incremental bundle; a round's
commit comes back the same way. The daemon fetches both into the user's repository before the
step counts, so a worker made anew on another node (`open` with the last saved snapshot) sees the
worktree exactly as the last saved step left it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from daemon.engine.code.git import git, identity_env
from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.ray.bundles import create_bundle, fetch_bundle
from daemon.engine.code.sandbox import CommandResult, SandboxPolicy, run_sandboxed
from daemon.engine.code.setup import run_setup
from daemon.engine.code.sites import SiteRequest, restore_snapshot, workspace_for
from daemon.engine.code.tools import ToolResult, Workspace
from daemon.engine.code.toolspec import call_tool
from daemon.engine.code.worktrees import CommitResult, Worktree, WorktreeManager, excluding

__all__ = [
    "MUTATING_TOOLS",
    "READING_TOOLS",
    "SNAPSHOT_REF",
    "OpenSpec",
    "Opened",
    "StepDone",
    "StreamWorker",
]

#: Tools that may change the worktree: a snapshot follows each.
MUTATING_TOOLS = frozenset({"write_file", "edit_file", "apply_patch", "run_command"})
#: Tools that only read (a test keeps the two lists covering every tool).
READING_TOOLS = frozenset({"list_files", "read_file", "search", "finish"})
#: Where a worker keeps its latest snapshot (the bundle's ref; the daemon renames it).
SNAPSHOT_REF = "refs/tierd-snapshots/latest"


@dataclass(frozen=True)
class OpenSpec:
    """What a worker makes its worktree from (the bundle travels beside it)."""

    request: SiteRequest
    branch: str
    start_commit: str
    #: The worktree's state to restore (a commit in the bundle), or None: the branch's head.
    snapshot: str | None


@dataclass(frozen=True)
class Opened:
    """Where the worktree was made."""

    node_id: str
    path: str


@dataclass(frozen=True)
class StepDone:
    """A tool call's result and the worktree's state after it (`bundle` None: unchanged)."""

    result: ToolResult
    snapshot: str | None
    bundle: bytes | None


@dataclass(frozen=True)
class _Stream:
    """The stream a worker serves now: its directory, worktree, tools and spec."""

    base: Path
    manager: WorktreeManager
    wt: Worktree
    ws: Workspace
    spec: OpenSpec

    @property
    def repo(self) -> Path:
        return self.manager.repo


class StreamWorker:
    """One stream's worktree on this node."""

    def __init__(self, workdir: str) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "tierd-ray"
        self._at: _Stream | None = None
        #: The branch's head as the daemon has it (the basis of the next bundle).
        self._head = ""
        self._snapshot: str | None = None
        #: What this worktree's setup made (never part of a snapshot or a commit).
        self._artifacts: tuple[str, ...] = ()

    async def ready(self) -> None:
        """Nothing: a warmed worker's first call, to know its process has started."""

    async def open(self, spec: OpenSpec, bundle: bytes) -> Opened:
        """Make the worktree: the branch from `bundle`, then the snapshot's files if any."""
        import ray

        r = spec.request
        base = self.workdir / r.task_id / r.stream_id
        # A directory left by an earlier worker of this stream on this node is stale: the
        # daemon's copy (the bundle) is the truth.
        await asyncio.to_thread(shutil.rmtree, base, True)
        self._reset()
        repo = base / "repo.git"
        await asyncio.to_thread(repo.mkdir, parents=True)
        await git(repo, "init", "--quiet", "--bare")
        await fetch_bundle(repo, bundle, ["+refs/*:refs/*"])
        manager = WorktreeManager(repo, base / "worktrees")
        wt = await manager.create(r.task_id, r.stream_id, base=spec.start_commit)
        if spec.snapshot is not None:
            # The changes are the worktree's, uncommitted, as on the node that made them.
            await restore_snapshot(wt, spec.snapshot)
        self._head = (await git(wt.path, "rev-parse", "HEAD", env=wt.git_env())).out.strip()
        prep = await prepare_worktree(repo, wt.path)
        sandbox = prep.sandbox(wt.path, self._sandboxed(r.settings.command_policy(r.hide)))
        self._at = _Stream(base, manager, wt, workspace_for(r, wt.path, wt.git_dir, sandbox), spec)
        self._snapshot = spec.snapshot
        # Outside a Ray worker (the worker's own tests) there is no node to name.
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        return Opened(node, str(wt.path))

    def _reset(self) -> None:
        """Forget the stream this worker served (a pooled worker serves another next)."""
        self._at = None
        self._head, self._snapshot, self._artifacts = "", None, ()

    def _sandboxed(self, policy: SandboxPolicy) -> SandboxPolicy:
        """`policy` hiding this node's other worktrees too (the daemon's paths are hidden
        already; a work directory outside /tmp is not)."""
        return replace(policy, hide=(*policy.hide, self.workdir))

    def _open(self) -> _Stream:
        if self._at is None:
            raise RuntimeError("the stream's worktree is not open on this worker")
        return self._at

    async def setup(self, command: str, artifacts: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Run the setup command in this worktree (its record, as `run_setup` gives it).

        `artifacts`: what the same setup made where the stream first worked. A worktree made
        again from a snapshot holds the coder's uncommitted files too, which must never be
        taken for the setup's: the first record's list stands.
        """
        at = self._open()
        r = at.spec.request
        done = await run_setup(command, at.wt, self._sandboxed(r.settings.setup_policy(r.hide)))
        if artifacts is not None:
            done["artifacts"] = list(artifacts)
        self._artifacts = tuple(done["artifacts"])
        return done

    async def tool(self, name: str, arguments: str) -> StepDone:
        """Run a tool call; with it, the worktree's new state if the call may have changed it."""
        result = await call_tool(self._open().ws, name, arguments)
        if name not in MUTATING_TOOLS:
            return StepDone(result, self._snapshot, None)
        snapshot, bundle = await self._record()
        return StepDone(result, snapshot, bundle)

    async def _record(self) -> tuple[str | None, bytes | None]:
        """The worktree as a snapshot commit and the bundle of what is new in it (None when
        nothing changed since the last one)."""
        at = self._open()
        wt = at.wt
        basis = self._snapshot or self._head
        env = {**wt.git_env(), "GIT_INDEX_FILE": str(at.base / "snapshot.index")}
        await git(wt.path, "read-tree", basis, env=env)
        await git(wt.path, "add", "--all", "--", ".", *excluding(self._artifacts), env=env)
        tree = (await git(wt.path, "write-tree", env=env)).out.strip()
        before = (await git(wt.path, "rev-parse", f"{basis}^{{tree}}", env=env)).out.strip()
        if tree == before:
            return self._snapshot, None
        r = at.spec.request
        who = identity_env(f"tierd (task {r.task_id}, stream {r.stream_id})")
        message = b"tierd: the worktree after a step\n"
        made = await git(
            wt.path, "commit-tree", tree, "-p", basis, env={**env, **who}, stdin=message
        )
        commit = made.out.strip()
        await git(at.repo, "update-ref", SNAPSHOT_REF, commit)
        bundle = await create_bundle(at.repo, [SNAPSHOT_REF], have=[basis])
        self._snapshot = commit
        return commit, bundle

    async def commit(
        self, summary: str, exclude: tuple[str, ...], by: str
    ) -> tuple[CommitResult, bytes | None]:
        """Commit the worktree on its branch; the bundle of the new commit (None: no change)."""
        at = self._open()
        made = await at.manager.commit(at.wt, summary, exclude=(*exclude, *self._artifacts), by=by)
        bundle = None
        if made.head != self._head:
            heads = f"refs/heads/{at.spec.branch}"
            bundle = await create_bundle(at.repo, [heads], have=[self._head])
            self._head = made.head
        self._snapshot = None
        return made, bundle

    async def run(self, command: str) -> CommandResult:
        """Run `command` in the worktree, in the sandbox (tierd's own test run)."""
        at = self._open()
        return await run_sandboxed(command, at.wt.path, at.ws.sandbox)

    async def close(self) -> None:
        """Remove the stream's repository and worktree from this node."""
        if self._at is not None:
            await asyncio.to_thread(shutil.rmtree, self._at.base, True)
        self._reset()
