"""A code stream's work in one round: its worktree, its setup, the coder's loop, its commit.

`CodeStreams` is what `StreamWork` asks instead of the plain executor when the task has a
repository. For one stream and round it:
1. makes (or finds again) the stream's worktree on `tierd/<task>/<stream>`, starting from the
   task's base commit, or from its dependencies' accepted branches merged;
2. prepares it (`.worktreeinclude` files, `link_dirs`) and runs `[code] setup_command` once in
   the sandbox (a failure fails the stream with the command's output);
3. runs the coder's loop with the tools, every step saved before it counts;
4. commits what changed on the stream's branch and returns the text the orchestrator reviews:
   the coder's summary, the files changed, the diff and the commands it ran with exit codes.

The stream's code facts (branch, files, +/-, commands, steps) are written to its row with
every step, together with the step's memo and its `tool.step` event, in one transaction.
When a review says "fix", the orchestrator fixes the stream in the same worktree with the
same tools (`fix`, see `stream_fix`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.engine.code.agent_loop import ToolOutcome, run_loop
from daemon.engine.code.git import git
from daemon.engine.code.project import project_context
from daemon.engine.code.setup import setup_failure
from daemon.engine.code.sites import LocalSites, SiteRequest, StreamSite, StreamSites
from daemon.engine.code.stream_fix import fix_stream
from daemon.engine.code.task_code import CodeTask
from daemon.engine.code.test_runs import failed, test_run
from daemon.engine.code.tool_step import run_tool_step
from daemon.engine.code.toolspec import tool_schemas
from daemon.engine.code.worktrees import WorktreeManager, branch_name
from daemon.engine.context import TaskContext
from daemon.engine.errors import StreamFailed
from daemon.engine.streams import StreamState
from roles.calls import ToolCall
from roles.coder import coder_messages, coder_review_text
from roles.models.content import AttachmentContent
from roles.plan.schema import Review
from roles.project import ProjectContext

__all__ = ["CodeStreams", "StreamFacts", "review_diff", "too_long"]

#: Longest diff the orchestrator reviews in full (the file list is always whole).
REVIEW_DIFF_CHARS = 40_000


@dataclass
class StreamFacts:
    """A code stream's record, as its row's `code_json` holds it."""

    branch: str
    #: Where the worktree is: a path on this machine, or `ray://<node>/<path>` on a cluster.
    worktree: str
    start_commit: str
    head: str | None = None
    files: list[str] = field(default_factory=list)
    insertions: int = 0
    deletions: int = 0
    commands: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    max_steps: int = 0
    setup: dict[str, Any] | None = None
    #: tierd's own run of the test command once the coder finished, or once the
    #: orchestrator fixed the stream (None: no command).
    test_run: dict[str, Any] | None = None
    ended: str | None = None
    #: The orchestrator's own fixes of the stream, one per review round that gave "fix"
    #: (`stream_fix.FixRecord`, as a dict): who fixed it, its steps, commands and test run.
    fixes: list[dict[str, Any]] = field(default_factory=list)
    #: The worktree's state saved with the last step, where the worktree may not last (a
    #: cluster node): a commit under `refs/tierd-snapshots/<task>/<stream>` in the user's
    #: repository.
    snapshot: str | None = None

    def json(self) -> str:
        return json.dumps(asdict(self))

    def follow(self, site: StreamSite) -> None:
        """Where the worktree is now and its last saved state (a stream may move nodes)."""
        self.worktree = site.location
        self.snapshot = site.snapshot


class CodeStreams:
    """The code side of one task run's streams."""

    def __init__(
        self,
        ctx: TaskContext,
        task: CodeTask,
        root: Path,
        hide: tuple[Path, ...],
        sites: StreamSites | None = None,
    ) -> None:
        self.ctx = ctx
        self.task = task
        #: The user's repository's worktrees on this machine (the merge point's, and the
        #: streams' own with the local backend).
        self.manager = WorktreeManager(task.repo, root)
        self.hide = hide
        self.sites = sites or LocalSites(root)
        self.settings = ctx.settings.code
        self.project: ProjectContext | None = None
        self.facts: dict[str, StreamFacts] = {}
        #: When each stream's work began (wall clock, kept across runs in the memo).
        self._began: dict[str, float] = {}
        self._sites: dict[str, StreamSite] = {}
        self._accepted: list[str] = []

    async def open(self) -> None:
        """Read the project's context from the base commit (before planning)."""
        self.project = await project_context(self.task.repo, self.task.base_commit, self.settings)
        self._accepted = list(self.task.branches)

    async def accepted(self, st: StreamState) -> None:
        """The stream's branch now holds an accepted result: the task keeps it."""
        await self.keep(branch_name(self.ctx.task_id, st.spec.id))

    async def keep(self, branch: str) -> None:
        """`branch` holds a result for the human: it stays when the task ends."""
        if branch not in self._accepted:
            self._accepted.append(branch)
            await self.ctx.store.set_task_code(self.ctx.task_id, {"branches": self._accepted})

    async def summaries(self, stream_ids: list[str]) -> dict[str, str]:
        """Each stream's latest summary (its coder's), by id."""
        return {sid: await self._summary(sid) or "" for sid in stream_ids}

    async def execute(
        self,
        st: StreamState,
        deps: dict[str, str],
        *,
        round_: int,
        feedback: str | None,
        answers: dict[str, str] | None,
        attachments: Sequence[AttachmentContent] = (),
    ) -> str:
        """Run one round of the stream's coder (`attachments`: its stream's own); the text
        its review reads."""
        spec = st.spec
        remaining = await self._remaining(st)
        try:
            # Placing the stream (a cluster node with room) counts against its time too.
            async with asyncio.timeout(remaining):
                site = await self.site(st)
        except TimeoutError:
            raise too_long(self.settings.stream_time_s) from None
        facts = self.facts[spec.id]
        # A dependency's work is in this worktree already: the coder reads its summary.
        deps = {d: await self._summary(d) or deps.get(d, "") for d in spec.depends_on}
        remaining = await self._remaining(st)
        project = self.project or ProjectContext(file_tree="")
        messages = coder_messages(
            spec,
            self.ctx.goal_line,
            deps,
            self.ctx.rules,
            project,
            feedback,
            answers,
            max_steps=self.settings.max_steps,
            attachments=attachments,
            show_images=self.ctx.attachments.executor_sees_images,
            descriptions=self.ctx.attachments.descriptions,
        )
        try:
            async with asyncio.timeout(remaining):
                await self._setup(st, site)
                result = await run_loop(
                    self.ctx.call,
                    messages,
                    tool_schemas(site.workspace),
                    lambda key, c, step: self._tool(st, site, key, c, step),
                    stream_id=spec.id,
                    round=round_,
                    max_steps=self.settings.max_steps,
                )
        except TimeoutError:
            raise too_long(self.settings.stream_time_s) from None
        await self._commit(st, site, result.summary, round_)
        facts.test_run = await test_run(
            self.ctx.store,
            self.ctx.task_id,
            f"tests:{spec.id}:r{round_}",
            self.settings.test_command,
            site.run,
        )
        await self.ctx.store.upsert_stream(self.ctx.task_id, spec.id, code_json=facts.json())
        await site.rest()
        diff = await review_diff(self.task.repo, facts)
        stat = [f"{len(facts.files)} file(s) changed, +{facts.insertions} -{facts.deletions}"]
        return coder_review_text(
            result.summary,
            "\n".join(stat + facts.files),
            diff,
            facts.commands,
            test_run=facts.test_run,
        )

    async def _remaining(self, st: StreamState) -> float:
        """Seconds the stream has left of `[code] stream_time_s` (counted from its start)."""
        began = await self._began_at(st.spec.id)
        return max(self.settings.stream_time_s - (time.time() - began), 0.001)

    async def _began_at(self, stream_id: str) -> float:
        """When the stream's work began: saved the first time, kept across runs."""
        if stream_id not in self._began:
            key = f"began:{stream_id}"
            saved = await self.ctx.store.get_step(self.ctx.task_id, key)
            if saved is None:
                saved = {"at": time.time()}
                await self.ctx.store.put_step(self.ctx.task_id, key, saved)
            self._began[stream_id] = float(saved["at"])
        return self._began[stream_id]

    def tests_fail(self, st: StreamState) -> str | None:
        """Why the stream may not be accepted on tierd's own test run, or None.

        A tests stream is exempt: its new tests fail until the feature exists.
        """
        run = self.facts[st.spec.id].test_run if st.spec.id in self.facts else None
        if st.spec.kind == "tests" or not failed(run):
            return None
        assert run is not None
        return (
            f"tierd ran the test command ({run['command']}) on your worktree and it failed "
            f"(exit code {run['exit_code']}); the end of its output:\n{run['output'][-2000:]}"
        )

    async def outcome(self, st: StreamState) -> str:
        """The accepted stream's output: its summary and where its change is."""
        facts = self.facts[st.spec.id]
        summary = await self._summary(st.spec.id) or ""
        return (
            f"{summary}\n\nBranch: {facts.branch} ({len(facts.files)} file(s) changed, "
            f"+{facts.insertions} -{facts.deletions}): {', '.join(facts.files) or 'no change'}"
        )

    async def fix(self, st: StreamState, verdict: Review, work: str, round_: int) -> Review:
        """The orchestrator fixes the stream itself (the review said "fix"); the verdict
        its fix leaves, after tierd's own test run (see `stream_fix`)."""
        return await fix_stream(self, st, verdict, work, round_)

    async def _summary(self, stream_id: str) -> str | None:
        saved = await self.ctx.store.get_step(self.ctx.task_id, f"summary:{stream_id}")
        return None if saved is None else str(saved["text"])

    # --- the worktree ------------------------------------------------------------------------

    async def site(self, st: StreamState) -> StreamSite:
        """The stream's site: its worktree (made, or found again) and what acts on it."""
        spec = st.spec
        facts = self.facts.get(spec.id)
        request = SiteRequest(
            task_id=self.ctx.task_id,
            stream_id=spec.id,
            repo=self.task.repo,
            base=self.task.base_commit,
            depends_on=tuple(branch_name(self.ctx.task_id, d) for d in spec.depends_on),
            ownership=tuple(spec.ownership),
            settings=self.settings,
            hide=self.hide,
            snapshot=facts.snapshot if facts else await self._saved_snapshot(spec.id),
        )
        site = await self.sites.open(request)
        await self._began_at(spec.id)
        if facts is None:
            self.facts[spec.id] = StreamFacts(
                branch=site.branch,
                worktree=site.location,
                start_commit=site.start_commit,
                max_steps=self.settings.max_steps,
                snapshot=request.snapshot,
            )
        else:
            facts.worktree = site.location
        self._sites[spec.id] = site
        return site

    async def _saved_snapshot(self, stream_id: str) -> str | None:
        """The worktree's state its row holds (a run resumed after a restart)."""
        for row in await self.ctx.store.streams_of(self.ctx.task_id):
            if row.stream_id == stream_id and row.code_json:
                return json.loads(row.code_json).get("snapshot")
        return None

    async def _setup(self, st: StreamState, site: StreamSite) -> None:
        """Run `[code] setup_command` once per worktree (memoised like any step)."""
        command = self.settings.setup_command
        if not command:
            return
        key = f"setup:{st.spec.id}"
        facts = self.facts[st.spec.id]
        done = await self.ctx.store.get_step(self.ctx.task_id, key)
        if done is None:
            done = await site.setup(command)
            facts.setup = done
            await self.ctx.store.upsert_stream(
                self.ctx.task_id,
                st.spec.id,
                step=(key, done),
                event=("code.setup", {"stream_id": st.spec.id, **_brief(done)}),
                code_json=facts.json(),
            )
        else:
            # A worktree made anew on another node has none of what the setup made.
            again = await site.setup_again(done)
            if again is not None:
                done = {**done, **again}
        facts.setup = done
        failure = setup_failure(done)
        if failure is not None:
            raise StreamFailed(failure)

    # --- one tool call -------------------------------------------------------------------------

    async def _tool(
        self, st: StreamState, site: StreamSite, key: str, c: ToolCall, step: int
    ) -> ToolOutcome:
        sid = st.spec.id
        facts = self.facts[sid]
        done = await run_tool_step(self.ctx, site, key, c)
        result = done.result
        facts.steps = max(facts.steps, step + 1)
        command = done.command(c)
        if command is not None:
            facts.commands.append(command)
        if done.fresh:
            facts.follow(site)
            await self.ctx.store.upsert_stream(
                self.ctx.task_id,
                sid,
                step=(key, result.as_dict()),
                event=("tool.step", done.event(sid, step + 1)),
                code_json=facts.json(),
            )
        return ToolOutcome(result.output, result.output if result.finished else None)

    # --- the end of a round --------------------------------------------------------------------

    async def _commit(self, st: StreamState, site: StreamSite, summary: str, round_: int) -> None:
        """Commit the round's changes (once: a resumed round finds its commit in the memo)."""
        sid = st.spec.id
        facts = self.facts[sid]
        key = f"commit:{sid}:r{round_}"
        done = await self.ctx.store.get_step(self.ctx.task_id, key)
        if done is None:
            made = await site.commit(summary, exclude=self.excludes(sid))
            facts.follow(site)
            done = {
                "head": made.head,
                "files": list(made.files),
                "insertions": made.insertions,
                "deletions": made.deletions,
            }
        await self.ctx.store.put_step(self.ctx.task_id, f"summary:{sid}", {"text": summary})
        facts.head, facts.files = done["head"], list(done["files"])
        facts.insertions, facts.deletions = done["insertions"], done["deletions"]
        await self.ctx.store.upsert_stream(
            self.ctx.task_id, sid, step=(key, done), code_json=facts.json()
        )

    def excludes(self, sid: str) -> tuple[str, ...]:
        """What a commit of the stream leaves out: linked dirs, what its setup made."""
        setup = self.facts[sid].setup or {}
        return (*self._sites[sid].commit_excludes(), *setup.get("artifacts", ()))

    async def release(self) -> None:
        """The run is over: free what the streams' sites hold elsewhere (a cluster's)."""
        self._sites.clear()
        await self.sites.release(self.ctx.task_id)


async def review_diff(repo: Path, facts: StreamFacts) -> str:
    """The stream's change for its review (bounded; the file list is always whole)."""
    if not facts.head or facts.head == facts.start_commit:
        return ""
    out = await git(
        repo,
        "diff",
        "--no-color",
        "--no-ext-diff",
        facts.start_commit,
        facts.head,
        "--",
        max_output_bytes=REVIEW_DIFF_CHARS,
    )
    text = out.out
    if out.truncated:
        text += "\n[the diff goes on; the file list above is complete]"
    return text


def too_long(limit_s: float) -> StreamFailed:
    """A stream's failure past `[code] stream_time_s`."""
    return StreamFailed(
        f"the stream ran past its time limit of {limit_s:g} s ([code] stream_time_s)"
    )


def _brief(done: dict[str, Any]) -> dict[str, Any]:
    return {k: done[k] for k in ("command", "exit_code", "duration_s")}
