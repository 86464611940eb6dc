"""The code workload: eight code streams on a generated repository, through the daemon.

The repository (`code_repo.py`) is written and committed in a directory of the bench's own
(never under the daemon's home, which the sandbox hides); the task is submitted with it as its
`repo`, on the `bench_code` scenario, and runs as any code task: worktrees, scripted tool
calls, the tests under bubblewrap, reviews, the merge, the merged result's tests. Then the
bench checks the merge (the result branch holds every stream's files, byte for byte as the
stream's head has them), computes the figures (`code_figures.py`) and replays each stream's
git and sandbox work with tierd's own classes (`code_overhead.py`).

Without bubblewrap, pytest or git the workload is not run: the figures say why, naming the
package, and the rest of the bench goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

from daemon.engine.code.git import git
from daemon.engine.code.sandbox import SandboxPolicy, SandboxUnavailable, check_sandbox
from daemon.tools.bench.code_figures import CodeRun, code_figures
from daemon.tools.bench.code_overhead import OverheadError, measure_overhead
from daemon.tools.bench.code_repo import GOAL, NEW_FILES, SCENARIO, make_repo
from daemon.tools.bench.harness import BenchError, Session
from daemon.tools.bench.measure import cpu_s
from roles.plan.schema import Plan
from roles.plan.validator import topological_order

__all__ = [
    "blobs",
    "cleaned_task",
    "code_unavailable",
    "level_count",
    "merged_check",
    "run_code_task",
    "run_code_workload",
]

#: Seconds the daemon may take to remove an ended task's worktrees.
CLEANUP_TIMEOUT_S = 60.0


async def code_unavailable(workdir: Path) -> str | None:
    """Why the code workload cannot run here (naming the package), or None."""
    if importlib.util.find_spec("pytest") is None:
        return "the code workload runs its project's tests with pytest: install 'pytest'"
    if shutil.which("git") is None:
        return "the code workload needs git: install the package 'git'"
    if shutil.which("bwrap") is None:
        return (
            "the code workload runs the tests in tierd's sandbox, which needs the package "
            "'bubblewrap' (no 'bwrap' on PATH; e.g. apt-get install -y bubblewrap)"
        )
    try:
        await check_sandbox(SandboxPolicy(timeout_s=30.0), workdir)
    except SandboxUnavailable as exc:
        return str(exc)
    return None


def level_count(plan: Plan) -> int:
    deps = {s.id: s.depends_on for s in plan.streams}
    level: dict[str, int] = {}
    for sid in topological_order(plan):
        level[sid] = 1 + max((level[d] for d in deps[sid]), default=-1)
    return 1 + max(level.values(), default=-1)


async def cleaned_task(session: Session, task_id: str) -> dict[str, Any]:
    """The task once the daemon has removed its worktrees (the replay uses the same
    repository: no two hands on its worktree records at once)."""
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while time.monotonic() < deadline:
        task: dict[str, Any] = await session.rpc("task/get", {"task_id": task_id})
        if (task.get("code") or {}).get("cleanup") is not None:
            return task
        await asyncio.sleep(0.1)
    raise BenchError(f"code task {task_id}: the daemon did not clean up its worktrees")


async def blobs(repo: Path, commit: str, paths: list[str] | None = None) -> dict[str, str]:
    """path -> blob id of the files of `commit` (only `paths`, when given)."""
    out = (await git(repo, "ls-tree", "-r", "-z", commit, "--", *(paths or []))).out
    blobs = {}
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        blobs[path] = meta.split()[2]
    return blobs


async def merged_check(repo: Path, task: dict[str, Any]) -> dict[str, Any]:
    """Whether the result branch holds each stream's files as the stream's head has them."""
    result = task["code"]["result"]
    merged = await blobs(repo, result["branch"])
    streams: dict[str, bool] = {}
    missing: list[str] = []
    for s in task["streams"]:
        if s["parent"] is not None:
            continue
        code = s.get("code") or {}
        files = list(code.get("files") or [])
        own = await blobs(repo, code["head"], files)
        wrong = [f for f in files if merged.get(f) != own.get(f)]
        streams[s["id"]] = bool(files) and not wrong
        missing += [f"{s['id']}: {f}" for f in wrong]
    return {
        "branch": result["branch"],
        "head": result["head"],
        "files_changed": len(result["files"]),
        "insertions": result["insertions"],
        "tests_exit_code": (result.get("tests") or {}).get("exit_code"),
        "streams_merged": streams,
        "all_merged": bool(streams) and all(streams.values()),
        "not_merged": missing,
        "new_files_present": all(f in merged for f in NEW_FILES),
    }


async def run_code_task(
    session: Session, repo: Path, label: str, idle_cpu_per_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate `repo`, run the workload's task on it through the session's daemon, wait for
    its clean-up; the finished task and its figures (`label` names the run in errors)."""
    s = session.s
    if await asyncio.to_thread(repo.exists):
        raise BenchError(f"{label}: {repo} exists already: give the bench a fresh directory")
    await asyncio.to_thread(make_repo, repo, s.code_files)
    session.use(SCENARIO, s.latency_scale)
    proc = session.proc
    cpu0 = cpu_s(proc)
    tid, submitted = await session.submit(GOAL, repo=str(repo))
    task = await session.wait_task(tid, s.workload_timeout_s)
    cpu = cpu_s(proc) - cpu0
    busy_s = time.time() - submitted
    records = session.records()
    session.reset_sim()
    if task["state"] != "completed":
        raise BenchError(f"{label}: the task {task['state']}: {task.get('error')}")
    task = await cleaned_task(session, tid)
    plan = Plan.model_validate(task["plan"])
    run = CodeRun(
        task=task,
        plan=plan,
        records=records,
        submitted=submitted,
        cpu_s=cpu,
        busy_s=busy_s,
        levels=level_count(plan),
    )
    return task, code_figures(run, s.ceiling, idle_cpu_per_s)


async def run_code_workload(
    session: Session, workdir: Path, idle_cpu_per_s: float
) -> dict[str, Any]:
    """Generate the repository in `workdir`, run the workload, check and replay it."""
    s = session.s
    reason = await code_unavailable(workdir)
    if reason is not None:
        session.log(f"  code: not run: {reason}")
        return {"name": "code", "not_run": reason}
    repo = workdir / "kit"
    task, figures = await run_code_task(session, repo, "code", idle_cpu_per_s)
    session.log(f"  code: tierd done in {figures['wall_clock_s']:.1f}s; replaying git and sandbox")
    merged = await merged_check(repo, task)
    try:
        overhead = await measure_overhead(
            repo,
            task,
            workdir / "replay",
            hide=(session.daemon.home,),
            rounds=s.code_rounds,
            runs=s.code_starts,
        )
    except OverheadError as exc:
        raise BenchError(f"code: the git and sandbox replay failed: {exc}") from None
    session.log(f"  code: replay done ({s.code_rounds} round(s))")
    return {
        **figures,
        "repo": {"path": str(repo), "filler_modules": s.code_files},
        "result": merged,
        "overhead": overhead,
    }
