"""A review's "fix" on a code stream: the orchestrator corrects the defect itself, with tools.

A code stream's result is its branch, so a fix is a change in the stream's worktree, made the
way the executor worked: the same tools, the same ownership, in the orchestrator's own loop
(`run_loop` with role "orchestrator", purpose "fix"), bounded by `[code] fix_max_steps`.
Then tierd commits the change on the stream's branch and runs the test command itself:
- the tests pass (or none is configured, or `review.require_passing_tests` is off): the
  verdict stays "fix" and the stream is accepted as fixed by the orchestrator;
- they fail: the fix is not accepted; the stream goes back to its executor as a redo, with the
  defect, what the orchestrator changed and the failing output (within review.max_rounds);
- the loop ran out of steps: a redo too, the partial change kept in the worktree.

Durable like the coder's loop: every model answer (`fix:<stream>:r<round>:s<step>`) and tool
result (`tool:fix:...`) is saved before it counts, the commit and the test run are steps of
their own, and the whole outcome is saved (`fixed:<stream>:r<round>`) with its `code.fix`
event: a resumed task replays a finished fix without a model call, a command or a commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from daemon.engine.code.agent_loop import StepsExhausted, ToolOutcome, run_loop
from daemon.engine.code.sites import StreamSite
from daemon.engine.code.test_runs import test_run
from daemon.engine.code.tool_step import run_tool_step
from daemon.engine.code.toolspec import tool_schemas
from daemon.engine.streams import StreamState
from roles.calls import ToolCall
from roles.code_fix import code_fix_messages, fix_problem
from roles.plan.schema import Review
from roles.project import ProjectContext

if TYPE_CHECKING:
    from daemon.engine.code.stream_runner import CodeStreams

__all__ = ["FIXED_BY", "FixRecord", "fix_stream"]

#: Who makes a review's fix (the commit, the stream's record and its summary say so).
FIXED_BY = "orchestrator"


@dataclass
class FixRecord:
    """One fix of a stream, as its row's `code_json` lists it (`StreamFacts.fixes`)."""

    round: int
    problem: str
    by: str = FIXED_BY
    steps: int = 0
    max_steps: int = 0
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: The orchestrator's summary of its change (None: it did not finish).
    summary: str | None = None
    #: Why the loop ended without a summary (its steps used up), else None.
    ended: str | None = None
    head: str | None = None
    files: list[str] = field(default_factory=list)
    test_run: dict[str, Any] | None = None
    #: What the fix left: "fix" (accepted as fixed) or "redo" (back to the executor).
    outcome: str | None = None


def _note(record: FixRecord) -> str:
    """What the stream's summary gains: the fix, in the orchestrator's words."""
    if record.summary is None:
        return (
            f"The orchestrator began fixing it (review round {record.round + 1}) but did not "
            f"finish in {record.max_steps} steps."
        )
    return f"Fixed by the orchestrator (review round {record.round + 1}): {record.summary}"


class _Fix:
    """One fix of one stream in one review round."""

    def __init__(self, code: CodeStreams, st: StreamState, round_: int) -> None:
        self.code = code
        self.ctx = code.ctx
        self.st = st
        self.sid = st.spec.id
        self.round = round_
        self.facts = code.facts[self.sid]

    def _keep(self, record: FixRecord) -> None:
        """`record` as the stream's facts list it (one per round)."""
        fixes = [f for f in self.facts.fixes if f.get("round") != record.round]
        self.facts.fixes = [*fixes, asdict(record)]

    async def run(self, verdict: Review, work: str) -> FixRecord:
        """The fix, from the memo if it was made before."""
        key = f"fixed:{self.sid}:r{self.round}"
        saved = await self.ctx.store.get_step(self.ctx.task_id, key)
        if saved is not None:
            return await self._restore(saved)
        site = await self.code.site(self.st)
        s = self.code.settings
        record = FixRecord(self.round, fix_problem(verdict), max_steps=s.fix_max_steps)
        messages = code_fix_messages(
            self.st.spec,
            self.ctx.goal_line,
            self.ctx.rules,
            self.code.project or ProjectContext(file_tree=""),
            record.problem,
            work,
            max_steps=s.fix_max_steps,
        )
        try:
            done = await run_loop(
                self.ctx.call,
                messages,
                tool_schemas(site.workspace),
                lambda k, c, step: self._tool(site, record, k, c, step),
                stream_id=self.sid,
                round=self.round,
                max_steps=s.fix_max_steps,
                role="orchestrator",
                purpose="fix",
                key_prefix="fix",
                steps_setting="[code] fix_max_steps",
            )
            record.summary = done.summary
        except StepsExhausted as exc:
            record.ended = str(exc)
        made = await self._commit(site, record)
        record.head, record.files = made["head"], list(made["files"])
        record.test_run = await test_run(
            self.ctx.store,
            self.ctx.task_id,
            f"tests:{self.sid}:r{self.round}:fix",
            s.test_command,
            site.run,
        )
        await site.rest()
        summary = f"{await self._summary()}\n\n{_note(record)}".strip()
        self._apply(made, record)
        record.outcome = "fix" if record.summary is not None and not self._failing() else "redo"
        self._keep(record)
        await self.ctx.store.put_step(self.ctx.task_id, f"summary:{self.sid}", {"text": summary})
        event = {
            "stream_id": self.sid,
            "round": self.round,
            "by": FIXED_BY,
            "steps": record.steps,
            "files": record.files,
            "exit_code": (record.test_run or {}).get("exit_code"),
            "outcome": record.outcome,
        }
        await self.ctx.store.upsert_stream(
            self.ctx.task_id,
            self.sid,
            step=(key, {"record": asdict(record), "made": made, "summary": summary}),
            event=("code.fix", event),
            code_json=self.facts.json(),
        )
        return record

    async def _restore(self, saved: dict[str, Any]) -> FixRecord:
        """A replayed fix: the stream's facts and summary as the fix left them."""
        record = FixRecord(**saved["record"])
        self._apply(saved["made"], record)
        self._keep(record)
        await self.ctx.store.put_step(
            self.ctx.task_id, f"summary:{self.sid}", {"text": str(saved["summary"])}
        )
        return record

    def _apply(self, made: dict[str, Any], record: FixRecord) -> None:
        self.facts.head, self.facts.files = made["head"], list(made["files"])
        self.facts.insertions, self.facts.deletions = made["insertions"], made["deletions"]
        if record.test_run is not None:
            self.facts.test_run = record.test_run

    def _failing(self) -> bool:
        return self.ctx.settings.require_passing_tests and self.code.tests_fail(self.st) is not None

    async def _summary(self) -> str:
        saved = await self.ctx.store.get_step(self.ctx.task_id, f"summary:{self.sid}")
        return "" if saved is None else str(saved["text"])

    async def _commit(self, site: StreamSite, record: FixRecord) -> dict[str, Any]:
        """The fix committed on the stream's branch (once: a replay finds the commit)."""
        key = f"commit:{self.sid}:r{self.round}:fix"
        done = await self.ctx.store.get_step(self.ctx.task_id, key)
        if done is None:
            made = await site.commit(
                _note(record), exclude=self.code.excludes(self.sid), by=FIXED_BY
            )
            self.facts.follow(site)
            done = {
                "head": made.head,
                "files": list(made.files),
                "insertions": made.insertions,
                "deletions": made.deletions,
            }
            await self.ctx.store.put_step(self.ctx.task_id, key, done)
        return dict(done)

    async def _tool(
        self, site: StreamSite, record: FixRecord, key: str, c: ToolCall, step: int
    ) -> ToolOutcome:
        done = await run_tool_step(self.ctx, site, key, c)
        result = done.result
        record.steps = max(record.steps, step + 1)
        command = done.command(c)
        if command is not None:
            record.commands.append(command)
        if done.fresh:
            self.facts.follow(site)
            self._keep(record)
            # After the executor's steps, so a live view takes it as the latest.
            event = done.event(
                self.sid, self.facts.steps + step + 1, by=FIXED_BY, fix_step=step + 1
            )
            await self.ctx.store.upsert_stream(
                self.ctx.task_id,
                self.sid,
                step=(key, result.as_dict()),
                event=("tool.step", event),
                code_json=self.facts.json(),
            )
        return ToolOutcome(result.output, result.output if result.finished else None)


def _redo(record: FixRecord, tests_fail: str | None) -> Review:
    """The redo a fix leaves: the defect, what the orchestrator did, why it is not accepted."""
    lines = [f"The reviewer found: {record.problem}"]
    if record.summary is None:
        lines.append(
            f"It began fixing this itself but did not finish in {record.max_steps} steps; "
            "whatever it changed is in your worktree. Finish the job."
        )
        reason = "the orchestrator's fix did not finish"
    else:
        lines.append(f"It fixed this itself ({record.summary}); its change is in your worktree.")
        reason = "the tests fail after the orchestrator's fix"
    if tests_fail:
        lines.append(tests_fail)
    return Review(verdict="redo", reason=reason, feedback="\n\n".join(lines))


async def fix_stream(
    code: CodeStreams, st: StreamState, verdict: Review, work: str, round_: int
) -> Review:
    """The orchestrator fixes `st` itself (its review in round `round_` said "fix", `work` is
    what it reviewed); the verdict the fix leaves: "fix" once tierd's tests pass, else "redo"
    with the reason and the test output as feedback."""
    record = await _Fix(code, st, round_).run(verdict, work)
    if record.outcome == "fix":
        return Review(verdict="fix", reason=f"fixed by the orchestrator: {verdict.reason}")
    return _redo(record, code.tests_fail(st))
