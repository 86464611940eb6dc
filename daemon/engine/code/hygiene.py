"""No orphans: a code task's worktrees and spare branches go when the task ends, and every
start of the daemon removes whatever a crash left behind.

When a task ends, its worktrees are removed and so are its branches, but for those that hold
a result for the human (see `_kept`), unless `[code] keep_worktrees`. At start, `reconcile`
does the same for every code task the store knows: worktrees and branches of tasks that no
longer need them go, `git worktree prune` runs, and directories under the worktrees root that
no live task owns are removed.
Branches of tasks the store does not know are left alone: tierd cannot tell what they hold.
A task killed while its approval merged the result into the user's branch is settled first:
if the merge landed, the approval is recorded (see `apply.reconcile_applies`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict
from pathlib import Path

from daemon.engine.code.apply import reconcile_applies
from daemon.engine.code.task_code import CodeTask
from daemon.engine.code.worktrees import Cleanup, WorktreeManager
from daemon.engine.settings import TaskSettings
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import Store, TaskRow

__all__ = ["cleanup_task", "reconcile"]

log = logging.getLogger("tierd.code")


def _kept(row: TaskRow, task: CodeTask) -> tuple[str, ...]:
    """The branches an ended task keeps for the human.

    A completed task keeps its merged result's branch, unless the human had it applied to
    their branch or written as a patch (then it is theirs already); a failed task keeps what
    it got to (the accepted streams' branches, a result's); a canceled one nothing.
    """
    if row.state == TaskState.canceled:
        return ()
    if row.state == TaskState.completed and task.result_branch:
        return () if task.applied in ("merge", "patch") else (task.result_branch,)
    return task.branches


def _summary(done: Cleanup) -> dict[str, object]:
    return {
        "worktrees_removed": len(done.worktrees),
        "branches_removed": list(done.branches),
        "branches_left": list(done.left),
    }


async def cleanup_task(store: Store, root: Path, task_id: str) -> Cleanup | None:
    """Remove an ended code task's worktrees and spare branches; None if there is nothing to
    do (not a code task, not ended, or `[code] keep_worktrees`)."""
    row = await store.get_task(task_id)
    task = CodeTask.of(row.code_json) if row is not None else None
    if row is None or task is None or TaskState(row.state) not in TERMINAL:
        return None
    if TaskSettings.from_json(row.settings_json).code.keep_worktrees:
        return None
    if not await asyncio.to_thread(task.repo.is_dir):
        log.warning("task %s: its repository %s is gone; nothing to clean", task_id, task.repo)
        return None
    done = await WorktreeManager(task.repo, root).remove_task(task_id, _kept(row, task))
    await store.set_task_code(task_id, {"cleanup": _summary(done)})
    log.info(
        "task %s: removed %d worktree(s) and %d branch(es)",
        task_id,
        len(done.worktrees),
        len(done.branches),
    )
    return done


async def reconcile(store: Store, root: Path) -> list[Cleanup]:
    """At start: remove what no code task needs any longer, in every repository tierd used;
    first, record an approval whose merge landed before the daemon died (`apply`)."""
    try:
        await reconcile_applies(store)
    except Exception:
        log.exception("checking interrupted applies failed; continuing")
    live: set[str] = set()
    kept: set[str] = set()
    repos: dict[Path, list[str]] = defaultdict(list)
    for row in await store.code_tasks():
        task = CodeTask.of(row.code_json)
        if task is None:
            continue
        repos[task.repo].append(row.id)
        ended = TaskState(row.state) in TERMINAL
        keep_all = TaskSettings.from_json(row.settings_json).code.keep_worktrees
        if not ended or keep_all:
            live.add(row.id)
        else:
            kept.update(_kept(row, task))
    known = {task_id for ids in repos.values() for task_id in ids}
    done: list[Cleanup] = []
    for repo in repos:
        if not await asyncio.to_thread(repo.is_dir):
            continue
        manager = WorktreeManager(repo, root)
        # Branches of tasks this store does not know (another home's, a deleted task's) are
        # not tierd's to judge: kept.
        strangers = {b for b in await manager.tierd_branches() if b.split("/")[1] not in known}
        done.append(await manager.reconcile(live, kept | strangers))
    if not repos:
        await asyncio.to_thread(_clear, root)
    return done


def _clear(root: Path) -> None:
    """No code task at all: nothing under the root is needed."""
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
