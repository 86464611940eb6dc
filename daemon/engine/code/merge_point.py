"""A code task's merge point: the accepted branches merged into one, tested, described.

The streams' branches are merged in dependency order into one commit without touching the
user's working tree (`git merge-tree --write-tree` + `commit-tree`, see `worktrees`), on the
task's result branch `tierd/<task>/_result` (git cannot hold both `tierd/<task>` and the
streams' `tierd/<task>/<stream>`). tierd then runs the test command on that result in a
worktree of its own; when it fails, the orchestrator gets one bounded round with the tools to
fix it (and a human's rejection gets the same, with their comment), and the tests run again.
A textual conflict between two streams goes to the orchestrator the same way: the second
branch is merged in a worktree, the conflicted files are its to resolve.

Each part is a saved step: a daemon killed during the merge resumes without a second merge
commit (the merge's commit is deterministic, and the branch is only ever moved to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.engine.code.agent_loop import StepsExhausted, ToolOutcome, run_loop
from daemon.engine.code.git import git, identity_env
from daemon.engine.code.paths import PathGlobs
from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.sandbox import run_sandboxed
from daemon.engine.code.setup import run_setup, setup_failure
from daemon.engine.code.stream_runner import CodeStreams
from daemon.engine.code.test_runs import failed, test_run
from daemon.engine.code.tools import ToolResult, Workspace
from daemon.engine.code.toolspec import call_tool, tool_schemas
from daemon.engine.code.worktrees import MergeConflict, Worktree, branch_name
from daemon.engine.errors import TaskFailed
from roles.calls import ToolCall
from roles.coder import coder_messages
from roles.plan.schema import Plan, StreamSpec
from roles.project import ProjectContext

__all__ = ["RESULT", "CodeMerge", "MergedResult", "result_text"]

#: The result's "stream" id: its branch is tierd/<task>/_result (no planned id starts with _).
RESULT = "_result"


@dataclass(frozen=True)
class MergedResult:
    """The merged change: where it is, what it changes, and how the tests went."""

    branch: str
    head: str
    files: list[str]
    insertions: int
    deletions: int
    tests: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "head": self.head,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "tests": self.tests,
        }


def dependency_order(streams: list[StreamSpec]) -> list[str]:
    """The stream ids with every stream after its dependencies (plan order otherwise)."""
    done: list[str] = []
    pending = list(streams)
    while pending:
        ready = [s for s in pending if all(d in done for d in s.depends_on)]
        if not ready:  # a cycle cannot pass the validator; keep plan order to be safe
            ready = pending[:1]
        for s in ready:
            done.append(s.id)
            pending.remove(s)
    return done


class CodeMerge:
    """Merges a code task's accepted branches and tests the result."""

    def __init__(self, code: CodeStreams) -> None:
        self.code = code
        self.ctx = code.ctx
        self.manager = code.manager
        self.branch = branch_name(self.ctx.task_id, RESULT)

    async def merge(self, plan: Plan) -> MergedResult:
        """The accepted streams merged on the result branch, tested (one fixing round)."""
        head = await self._merged(plan)
        wt = await self._worktree(head)
        tests = await self._tests(wt, "final")
        if failed(tests) and self.ctx.settings.require_passing_tests:
            await self.fix(wt, _failing(tests), "final")
            tests = await self._tests(wt, "final-fixed")
            if failed(tests):
                raise TaskFailed(
                    "the merged result's tests still fail after a fixing round; the streams' "
                    f"branches and {self.branch} are kept for you. The end of the output:\n"
                    f"{(tests or {}).get('output', '')[-1500:]}"
                )
        return await self._describe(wt, tests)

    async def revise(self, comment: str, revision: int) -> MergedResult:
        """A human rejected the result with `comment`: the orchestrator revises it."""
        wt = await self._worktree(None)
        await self.fix(wt, f"The human rejected the result: {comment}", f"rev{revision}")
        tests = await self._tests(wt, f"rev{revision}")
        return await self._describe(wt, tests)

    # --- the merge ------------------------------------------------------------------------------

    async def _merged(self, plan: Plan) -> str:
        """The merge commit of the accepted branches (saved: a resumed merge reuses it)."""
        key = "merge:result"
        saved = await self.ctx.store.get_step(self.ctx.task_id, key)
        if saved is not None:
            return str(saved["head"])
        order = dependency_order(plan.streams)
        head = self.code.task.base_commit
        for sid in order:
            stream_branch = branch_name(self.ctx.task_id, sid)
            try:
                head = await self.manager.merge([head, stream_branch])
            except MergeConflict as conflict:
                head = await self._resolve(head, stream_branch, list(conflict.files))
        await self.ctx.store.put_step(self.ctx.task_id, key, {"head": head})
        return head

    async def _resolve(self, head: str, other: str, files: list[str]) -> str:
        """Merge `other` into `head` in a worktree; the orchestrator resolves the conflicts.

        Resumable at every point: the resolution is a saved step; a worktree found mid-merge
        (`MERGE_HEAD`) goes on with the orchestrator's loop (its steps replay from the memo)
        instead of merging again; one whose HEAD moved past `head` holds the resolution,
        committed before the daemon died, and is not merged or committed twice.
        """
        key = f"merge:resolved:{other}"
        saved = await self.ctx.store.get_step(self.ctx.task_id, key)
        if saved is not None:
            return str(saved["head"])
        wt = await self._worktree(head)
        env = {**wt.git_env(), **identity_env("tierd")}
        current = await self._head(wt)
        if current == head:
            merging = await git(
                wt.path, "rev-parse", "--quiet", "--verify", "MERGE_HEAD", env=env, check=False
            )
            if merging.exit_code != 0:
                await git(wt.path, "merge", "--no-ff", "--no-edit", other, env=env, check=False)
            why = (
                f"Merging {other} into the result conflicts in: {', '.join(files)}. Resolve "
                "the conflict markers in those files so both changes hold, then finish."
            )
            await self.fix(wt, why, f"conflict-{other.rsplit('/', 1)[-1]}", only=files)
            await git(wt.path, "add", "--all", "--", *files, env=env)
            await git(wt.path, "commit", "--quiet", "--no-verify", "--no-edit", env=env,
                      check=False)  # fmt: skip
            current = await self._head(wt)
        await self.ctx.store.put_step(self.ctx.task_id, key, {"head": current})
        return current

    async def _head(self, wt: Worktree) -> str:
        return (await git(wt.path, "rev-parse", "HEAD", env=wt.git_env())).out.strip()

    async def _worktree(self, head: str | None) -> Worktree:
        """The result branch's worktree, at `head` if given.

        A worktree already past `head` (`head` is an ancestor of its HEAD) is left there: it
        holds the commits tierd made on it (a fix, a resolution) before a restart, which a
        replayed loop, reading its steps from the memo, would not make again.
        """
        path = self.manager.path_for(self.ctx.task_id, RESULT)
        if head is not None and path not in await self.manager.registered():
            await git(self.manager.repo, "branch", "--force", self.branch, head)
        wt = await self.manager.create(
            self.ctx.task_id, RESULT, base=head or self.code.task.base_commit
        )
        if head is not None:
            current = await self._head(wt)
            ahead = await git(
                self.manager.repo, "merge-base", "--is-ancestor", head, current, check=False
            )
            if current != head and ahead.exit_code != 0:
                await git(wt.path, "reset", "--hard", "--quiet", head, env=wt.git_env())
        return wt

    # --- tests and fixes ------------------------------------------------------------------------

    async def _tests(self, wt: Worktree, when: str) -> dict[str, Any] | None:
        s = self.code.settings
        prep = await prepare_worktree(self.code.task.repo, wt.path, link_dirs=s.link_dirs)
        if s.setup_command and s.test_command:
            key = f"setup:{RESULT}"
            done = await self.ctx.store.get_step(self.ctx.task_id, key)
            if done is None:
                setup = prep.sandbox(wt.path, s.setup_policy(self.code.hide))
                done = await run_setup(s.setup_command, wt, setup)
                await self.ctx.store.put_step(self.ctx.task_id, key, done)
            failure = setup_failure(done)
            if failure is not None:
                raise TaskFailed(f"the merged result could not be set up: {failure}")
        policy = prep.sandbox(wt.path, s.command_policy(self.code.hide))
        return await test_run(
            self.ctx.store,
            self.ctx.task_id,
            f"tests:{RESULT}:{when}",
            s.test_command,
            lambda command: run_sandboxed(command, wt.path, policy),
        )

    async def fix(self, wt: Worktree, why: str, label: str, only: list[str] | None = None) -> None:
        """A bounded round of the orchestrator with the tools on the result's worktree."""
        s = self.code.settings
        prep = await prepare_worktree(self.code.task.repo, wt.path, link_dirs=s.link_dirs)
        ws = Workspace(
            root=wt.path,
            git_dir=wt.git_dir,
            ownership=PathGlobs(only or ["**"]),
            secrets=s.secrets(),
            sandbox=prep.sandbox(wt.path, s.command_policy(self.code.hide)),
            test_command=s.test_command,
            lint_command=s.lint_command,
            allow_shell=s.allow_shell,
        )
        spec = StreamSpec(
            id="merged-result",  # for the prompt; the calls name the stream RESULT
            title="The merged result",
            job=why,
            output_definition="the merged change, working, with its tests passing",
            ownership=only or ["**"],
        )
        messages = coder_messages(
            spec,
            self.ctx.goal_line,
            {},
            self.ctx.rules,
            self.code.project or ProjectContext(file_tree=""),
            feedback=why,
            max_steps=s.merge_max_steps,
        )

        async def run(key: str, c: ToolCall, step: int) -> ToolOutcome:
            saved = await self.ctx.store.get_step(self.ctx.task_id, key)
            if saved is None:
                result = await call_tool(ws, c.name, c.arguments)
                await self.ctx.store.put_step(self.ctx.task_id, key, result.as_dict())
            else:
                result = ToolResult.from_dict(saved)
            return ToolOutcome(result.output, result.output if result.finished else None)

        try:
            outcome = await run_loop(
                self.ctx.call,
                messages,
                tool_schemas(ws),
                run,
                stream_id=RESULT,
                round=0,
                max_steps=s.merge_max_steps,
                steps_setting="[code] merge_max_steps",
                role="orchestrator",
                purpose="fix",
                key_prefix=f"fix-{label}",
            )
        except StepsExhausted as exc:
            # At the merge point there is no stream to send back: the task ends, saying why.
            raise TaskFailed(f"at the merge point ({label}): {exc}") from exc
        setup = await self.ctx.store.get_step(self.ctx.task_id, f"setup:{RESULT}") or {}
        exclude = (*prep.commit_excludes(), *setup.get("artifacts", ()))
        await self.manager.commit(wt, outcome.summary, exclude=exclude)

    async def _describe(self, wt: Worktree, tests: dict[str, Any] | None) -> MergedResult:
        head = (await git(wt.path, "rev-parse", "HEAD", env=wt.git_env())).out.strip()
        files, ins, dels = await self.manager.diff_stat(self.code.task.base_commit, head)
        merged = MergedResult(self.branch, head, list(files), ins, dels, tests)
        await self.ctx.store.set_task_code(self.ctx.task_id, {"result": merged.as_dict()})
        await self.code.keep(self.branch)
        return merged


def _failing(tests: dict[str, Any] | None) -> str:
    output = (tests or {}).get("output", "")
    return (
        "The merged result's tests fail. Find the cause and fix it; the end of the test "
        f"output:\n{output[-3000:]}"
    )


def result_text(goal: str, merged: MergedResult, summaries: dict[str, str]) -> str:
    """The task's result for a person: the merged change, its tests, each stream's summary."""
    tests = merged.tests
    verdict = (
        "no test command configured"
        if tests is None
        else ("tests pass" if not failed(tests) else f"tests FAIL (exit {tests['exit_code']})")
    )
    lines = [
        f"# {goal.strip().splitlines()[0] if goal.strip() else 'Result'}",
        "",
        f"Branch `{merged.branch}` at {merged.head[:12]}: {len(merged.files)} file(s) changed, "
        f"+{merged.insertions} -{merged.deletions}; {verdict}.",
        "",
        *[f"- {f}" for f in merged.files],
        "",
        "## Streams",
    ]
    for sid, summary in summaries.items():
        lines += ["", f"### {sid}", "", summary.strip()]
    return "\n".join(lines) + "\n"
