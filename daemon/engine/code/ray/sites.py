"""Streams' sites on a Ray cluster: the daemon's side of a stream whose worktree is on a node.

`RaySites.open` gives a stream a worker on a node with room (one per stream, kept across its
review rounds): the stream's branch (made in the user's repository at its start commit, as the
local backend does) and its last saved snapshot travel there as one bundle. Every call then goes
to that worker; what it sends back is fetched into the user's repository before the call
returns, so it is durable before the step that made it is saved:
- a snapshot of the worktree after a tool call that may change files, under
  `refs/tierd-snapshots/<task>/<stream>` (hidden from `git branch`; removed with the task's
  branches);
- a round's commit, on the stream's branch `tierd/<task>/<stream>`.

A worker that is lost (its node died, the driver restarted) is made again on another node from
the last saved snapshot, and the call that was in flight runs there: it was never saved, so it
never counted. A finished, saved call never runs again; the setup command, which makes the
worktree runnable rather than doing the stream's work, runs again in the new worktree.

Model calls stay in the daemon: the loop, its memo and the keys never leave it. A node sees the
repository's tracked files, the stream's settings and the tool calls, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.engine.code.ray.bridge import RayBridge, StreamLost
from daemon.engine.code.ray.bundles import create_bundle, fetch_bundle
from daemon.engine.code.ray.worker import SNAPSHOT_REF, Opened, OpenSpec, StepDone
from daemon.engine.code.sandbox import CommandResult
from daemon.engine.code.setup import setup_failure
from daemon.engine.code.sites import SiteRequest, workspace_for
from daemon.engine.code.tools import ToolResult, Workspace
from daemon.engine.code.worktrees import SNAPSHOTS, CommitResult, WorktreeManager, branch_name
from daemon.engine.errors import StreamFailed

__all__ = ["MAX_MOVES", "RaySite", "RaySites", "snapshot_ref"]

log = logging.getLogger("tierd.ray")

#: How many times one stream may lose its worker before it fails.
MAX_MOVES = 5
#: How long `daemon/status` waits for the cluster's node list.
DESCRIBE_TIMEOUT_S = 3.0


def snapshot_ref(task_id: str, stream_id: str) -> str:
    """Where the user's repository keeps a stream's latest snapshot."""
    return f"{SNAPSHOTS}{task_id}/{stream_id}"


@dataclass
class RaySite:
    """One stream's worker on the cluster, as the stream loop uses it."""

    sites: RaySites
    request: SiteRequest
    branch: str
    start_commit: str
    workspace: Workspace
    snapshot: str | None = None
    opened: Opened | None = None
    #: The setup ran on the current worker (a new worker has to run it again).
    setup_ran: bool = False
    #: Workers lost in a row (a call that went through starts the count again).
    moves: int = 0
    #: The setup's first record, once it ran (a new worker runs it again, with its artifacts).
    _setup: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return f"{self.request.task_id}/{self.request.stream_id}"

    @property
    def location(self) -> str:
        if self.opened is None:
            return "ray://(not placed)"
        return f"ray://{self.opened.node_id}{self.opened.path}"

    async def connect(self) -> None:
        """Make the worker on a node with room: the branch and the snapshot as one bundle."""
        repo = self.request.repo
        refs = [f"refs/heads/{self.branch}"]
        if self.snapshot is not None:
            refs.append(snapshot_ref(self.request.task_id, self.request.stream_id))
        bundle = await create_bundle(repo, refs)
        spec = OpenSpec(self.request, self.branch, self.start_commit, self.snapshot)
        self.setup_ran = False
        try:
            self.opened = await self.sites.bridge.request("open", self.key, spec, bundle)
        except asyncio.CancelledError:
            # Cancelled while waiting for room or for the worker: the driver must not keep
            # the worker (and the node's room) it may still get.
            self.sites.in_background(self.close())
            raise
        log.info("stream %s works on %s", self.key, self.location)

    async def _call(self, method: str, *args: Any) -> Any:
        """`method` on the worker; a lost worker is made again elsewhere and the call retried."""
        while True:
            try:
                await self._placed()
                done = await self.sites.bridge.request("call", self.key, method, args)
            except StreamLost as exc:
                self._lost(exc)
            except asyncio.CancelledError:
                # The run was cancelled (a cancel, a stop): so is the call on the node, and a
                # command it runs with it.
                self.sites.in_background(self.sites.tell("cancel", self.key))
                raise
            else:
                self.moves = 0
                return done

    async def place(self) -> None:
        """Have a worker (made again elsewhere if it is lost meanwhile)."""
        while True:
            try:
                return await self._placed()
            except StreamLost as exc:
                self._lost(exc)

    async def _placed(self) -> None:
        if self.opened is None:
            await self.connect()
        if self._setup is not None and not self.setup_ran:
            await self._setup_here(self._setup)

    def _lost(self, exc: StreamLost) -> None:
        self.opened = None
        self.moves += 1
        if self.moves > MAX_MOVES:
            raise StreamFailed(
                f"the stream lost its Ray worker {self.moves} times in a row; the last: {exc}"
            ) from exc
        log.warning(
            "stream %s lost its worker (%s); it goes on on another node from its last saved step",
            self.key,
            exc,
        )

    async def _setup_here(self, first: dict[str, Any]) -> None:
        """The setup again on a new worker, which fails the stream if it fails there."""
        args = (str(first["command"]), tuple(first.get("artifacts") or ()))
        again: dict[str, Any] = await self.sites.bridge.request("call", self.key, "setup", args)
        self.setup_ran = True
        failure = setup_failure(again)
        if failure is not None:
            raise StreamFailed(f"on the node the stream moved to, {failure}")

    async def setup(self, command: str) -> dict[str, Any]:
        done: dict[str, Any] = await self._call("setup", command)
        self._setup, self.setup_ran = done, True
        return done

    async def setup_again(self, done: dict[str, Any]) -> dict[str, Any] | None:
        self._setup = done
        await self.place()  # a worker that has not run it does now (a failure raises)
        return None

    async def tool(self, name: str, arguments: str) -> ToolResult:
        done: StepDone = await self._call("tool", name, arguments)
        if done.bundle is not None:
            ref = snapshot_ref(self.request.task_id, self.request.stream_id)
            await fetch_bundle(self.request.repo, done.bundle, [f"+{SNAPSHOT_REF}:{ref}"])
        self.snapshot = done.snapshot
        return done.result

    async def commit(self, summary: str, *, exclude: tuple[str, ...], by: str = "") -> CommitResult:
        made, bundle = await self._call("commit", summary, exclude, by)
        if bundle is not None:
            # A fast-forward only: every commit descends from the branch's head, and a
            # branch the user moved (or checked out) is refused, never overwritten.
            heads = f"refs/heads/{self.branch}"
            await fetch_bundle(self.request.repo, bundle, [f"{heads}:{heads}"])
        self.snapshot = None
        result: CommitResult = made
        return result

    async def run(self, command: str) -> CommandResult:
        result: CommandResult = await self._call("run", command)
        return result

    def commit_excludes(self) -> tuple[str, ...]:
        return ()  # a node's worktree links nothing of the user's (no `link_dirs` there)

    async def rest(self) -> None:
        await self.close()

    async def close(self) -> None:
        """Let the worker go (the driver also drops an open still under way)."""
        self.opened, self.setup_ran = None, False
        await self.sites.tell("close", self.key)


class RaySites:
    """Streams work on Ray workers; one `RaySite` per stream, while its task runs here."""

    def __init__(self, bridge: RayBridge, root: Path) -> None:
        self.bridge = bridge
        #: The daemon's worktrees directory (the streams' own worktrees are on the nodes).
        self.root = root
        self._sites: dict[tuple[str, str], RaySite] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def open(self, request: SiteRequest) -> RaySite:
        key = (request.task_id, request.stream_id)
        site = self._sites.get(key)
        if site is not None:
            return site
        manager = WorktreeManager(request.repo, self.root)
        start = await manager.start_commit(request.base, request.depends_on)
        branch = branch_name(request.task_id, request.stream_id)
        await manager.ensure_branch(branch, start)
        # The model is offered the tools as the node will run them (its paths differ).
        workspace = workspace_for(
            request, Path("/"), Path("/"), request.settings.command_policy(())
        )
        site = RaySite(self, request, branch, start, workspace, snapshot=request.snapshot)
        self._sites[key] = site  # first: a release lets go of a worker still being placed
        await site.place()  # placed now: the stream's record names its node from the start
        return site

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting (its caller is being cancelled)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def tell(self, op: str, key: str) -> None:
        """Ask the driver to `op` ("close", "cancel") `key`'s worker: never starts the driver
        (gone, it took its workers with it) and never raises."""
        if not self.bridge.running:
            return
        try:
            await self.bridge.request(op, key)
        except (StreamLost, StreamFailed) as exc:  # gone: nothing runs there any more
            log.info("stream %s: %s: %s", key, op, exc)

    async def release(self, task_id: str) -> None:
        for key in [k for k in self._sites if k[0] == task_id]:
            await self._sites.pop(key).close()  # never raises: a release must reach them all

    async def describe(self) -> dict[str, Any]:
        """The backend; the nodes and their room while the driver runs (a status never
        starts it: it connects with the first code stream)."""
        bridge = self.bridge
        view: dict[str, Any] = {
            "backend": "ray",
            "address": bridge.settings.address or None,
            "driver": bridge.running,
            "streams": sum(1 for site in self._sites.values() if site.opened is not None),
            "nodes": None,
        }
        if bridge.running:
            try:
                async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
                    view["nodes"] = await bridge.request("nodes")
            except (TimeoutError, StreamLost, StreamFailed) as exc:
                log.info("no node list for the status: %s", exc)
        return view
