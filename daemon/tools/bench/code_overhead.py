"""What git and the sandbox cost a code stream, measured with tierd's own classes.

After the code workload's task has ended (and the daemon has cleaned up after it), the bench
replays each stream's git and sandbox work on the same repository, in the plan's dependency
order, with the classes the daemon uses (`WorktreeManager`, `prepare_worktree`,
`run_sandboxed`, the task's own `CodeSettings`), timing each operation:

- `start_commit`: where the stream starts: the base resolved, or its dependencies' branches
  merged (`WorktreeManager.start_commit`, what `create` does first);
- `worktree_add`: `WorktreeManager.create` from that commit (the branch and `git worktree add`);
- `commit`: `WorktreeManager.commit` of the stream's real change (its files as the daemon's
  stream left them, taken from its head commit);
- `sandbox_start` / `plain_start`: one trivial command (`/bin/true`) through `run_sandboxed`
  under the policy the task's commands ran under (bubblewrap), and the same command with the
  same call and `mode="none"` (no bubblewrap), alternating;
- `merge`: the stream's branch merged into the result so far (`WorktreeManager.merge`, the merge
  point's primitive), base first, then every stream in dependency order;
- `worktree_remove`: `git worktree remove --force`, the command tierd removes a worktree with;
  `task_cleanup` (once per round): `WorktreeManager.remove_task`, branches included.

The merged tree is compared with the daemon's own result: they must be the same tree.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from daemon.engine.code.git import git
from daemon.engine.code.merge_point import dependency_order
from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.sandbox import SandboxPolicy, run_sandboxed
from daemon.engine.code.worktrees import Worktree, WorktreeManager, branch_name
from daemon.engine.settings import TaskSettings
from daemon.tools.bench.measure import summary_ms
from roles.plan.schema import Plan

__all__ = ["OPERATIONS", "TRIVIAL_COMMAND", "OverheadError", "measure_overhead"]

TRIVIAL_COMMAND = ("/bin/true",)
#: The per-stream operations, in the order a stream meets them.
OPERATIONS = (
    "start_commit",
    "worktree_add",
    "commit",
    "sandbox_start",
    "plain_start",
    "merge",
    "worktree_remove",
)
T = TypeVar("T")


class OverheadError(RuntimeError):
    """The replay could not be done (a command failed in the sandbox, a merge differed...)."""


@dataclass
class _Samples:
    """Seconds per operation and stream, and the once-per-round task clean-ups."""

    by_op: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    cleanups: list[float] = field(default_factory=list)

    async def timed(self, op: str, sid: str, work: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        out = await work
        self.by_op[op][sid].append(time.perf_counter() - t0)
        return out


@dataclass(frozen=True)
class _Stream:
    """What the replay needs of one of the daemon's streams."""

    id: str
    depends_on: tuple[str, ...]
    head: str
    files: tuple[str, ...]


def _streams(task: dict[str, Any]) -> list[_Stream]:
    plan = Plan.model_validate(task["plan"])
    done = {s["id"]: s for s in task["streams"] if s["parent"] is None}
    out = []
    for sid in dependency_order(plan.streams):
        spec = next(s for s in plan.streams if s.id == sid)
        code = done[sid].get("code") or {}
        if not code.get("head"):
            raise OverheadError(f"stream {sid} has no head commit in the task")
        out.append(_Stream(sid, tuple(spec.depends_on), code["head"], tuple(code["files"])))
    return out


async def _take_change(wt: Worktree, s: _Stream) -> None:
    """The stream's files in `wt` as its head has them (a file its head lacks is deleted)."""
    if not s.files:
        return
    listed = await git(wt.path, "ls-tree", "-z", "--name-only", s.head, "--", *s.files,
                       env=wt.git_env())  # fmt: skip
    present = [p for p in listed.out.split("\0") if p]
    if present:
        await git(wt.path, "checkout", s.head, "--", *present, env=wt.git_env())
    for gone in set(s.files) - set(present):
        (wt.path / gone).unlink(missing_ok=True)


async def _starts(
    samples: _Samples, sid: str, wt: Worktree, policy: SandboxPolicy, runs: int
) -> None:
    """`runs` sandboxed and `runs` plain starts of the trivial command, alternating."""
    plain = replace(policy, mode="none")
    for _ in range(runs):
        for op, pol in (("sandbox_start", policy), ("plain_start", plain)):
            result = await samples.timed(op, sid, run_sandboxed(TRIVIAL_COMMAND, wt.path, pol))
            if not result.ok:
                raise OverheadError(
                    f"{' '.join(TRIVIAL_COMMAND)} ({op}) in {wt.path}: {result.describe()}: "
                    f"{result.output.strip()[-500:]}"
                )


async def _round(
    manager: WorktreeManager,
    task: dict[str, Any],
    streams: list[_Stream],
    samples: _Samples,
    policy_of: Callable[[Path], Awaitable[SandboxPolicy]],
    label: str,
    runs: int,
) -> str:
    """One replay of every stream; returns the merged commit."""
    base = str(task["code"]["base_commit"])
    worktrees: dict[str, Worktree] = {}
    for s in streams:
        deps = [branch_name(label, d) for d in s.depends_on]
        start = await samples.timed("start_commit", s.id, manager.start_commit(base, deps))
        wt = await samples.timed("worktree_add", s.id, manager.create(label, s.id, base=start))
        worktrees[s.id] = wt
        await _take_change(wt, s)
        await samples.timed("commit", s.id, manager.commit(wt, f"bench replay of {s.id}"))
        await _starts(samples, s.id, wt, await policy_of(wt.path), runs)
    head = base
    for s in streams:
        head = await samples.timed("merge", s.id, manager.merge([head, branch_name(label, s.id)]))
    for s in streams:
        path = str(worktrees[s.id].path)
        await samples.timed(
            "worktree_remove", s.id, git(manager.repo, "worktree", "remove", "--force", path)
        )
    t0 = time.perf_counter()
    await manager.remove_task(label)
    samples.cleanups.append(time.perf_counter() - t0)
    return head


def _ms3(values: list[float]) -> dict[str, float]:
    s = summary_ms(values)
    return {"n": s["n"], "mean_ms": s["mean"], "p50_ms": s["p50"], "max_ms": s["max"]}


async def _tree(repo: Path, commit: str) -> str:
    return (await git(repo, "rev-parse", f"{commit}^{{tree}}")).out.strip()


async def measure_overhead(
    repo: Path,
    task: dict[str, Any],
    root: Path,
    *,
    hide: tuple[Path, ...],
    rounds: int,
    runs: int,
) -> dict[str, Any]:
    """Replay the finished code task's streams `rounds` times (worktrees under `root`);
    `runs` trivial-command starts per stream and round in each mode. The figures in ms."""
    streams = _streams(task)
    settings = TaskSettings.from_stored(task["report"]["settings"]).code
    manager = WorktreeManager(repo, root)
    samples = _Samples()

    async def policy_of(worktree: Path) -> SandboxPolicy:
        prep = await prepare_worktree(repo, worktree, link_dirs=settings.link_dirs)
        return prep.sandbox(worktree, settings.command_policy(hide))

    heads = []
    for r in range(rounds):
        heads.append(
            await _round(manager, task, streams, samples, policy_of, f"bench-replay-{r + 1}", runs)
        )
    daemon_head = str(task["code"]["result"]["head"])
    daemon_tree = await _tree(repo, daemon_head)
    trees = {await _tree(repo, h) for h in heads}
    all_ops = {op: [v for vs in samples.by_op[op].values() for v in vs] for op in OPERATIONS}
    sandbox = summary_ms(all_ops["sandbox_start"])
    plain = summary_ms(all_ops["plain_start"])
    return {
        "rounds": rounds,
        "starts_per_stream": runs,
        "command": " ".join(TRIVIAL_COMMAND),
        "sandbox": settings.sandbox,
        "operations": {
            **{op: _ms3(all_ops[op]) for op in OPERATIONS},
            "task_cleanup": _ms3(samples.cleanups),
        },
        # What bubblewrap adds to a command's start, on the medians (noise cancels there).
        "sandbox_extra_ms_p50": sandbox["p50"] - plain["p50"],
        "per_stream": {
            s.id: {
                "depends_on": list(s.depends_on),
                "files": list(s.files),
                **{op: _ms3(samples.by_op[op][s.id]) for op in OPERATIONS},
            }
            for s in streams
        },
        "merged_tree": next(iter(trees)) if len(trees) == 1 else sorted(trees),
        "daemon_tree": daemon_tree,
        "merged_tree_matches_daemon": trees == {daemon_tree},
    }
