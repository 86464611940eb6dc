"""No orphans: a code task's worktrees and spare branches go when the task ends, and every
start of the daemon removes whatever a crash left behind.

When a task ends, its worktrees are removed and so are its branches, but for those that hold
a result for the human (see `_kept`), unless `[code] keep_worktrees`. At start, `reconcile`
does the same for every code task the store knows: worktrees and branches of tasks that no
longer need them go, `git worktree prune` runs, and directories under the worktrees root that
no live task owns are removed.
Branches of tasks the store does not know are left alone: tierd cannot tell what they hold
(a task it deleted, it knows: see below).
A task killed while its approval merged the result into the user's branch is settled first:
if the merge landed, the approval is recorded (see `apply.reconcile_applies`).

A deleted task (`erase_task`) loses all its worktrees and branches, `keep_worktrees` or not,
but the result branch the human approved as a branch: that one is theirs. Its rows are gone
by then; the store's `task.deleted` event keeps its repository and that branch, so a start
after a crash mid-deletion finishes the job (`reconcile` treats it like an ended task).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from daemon.engine.code.apply import reconcile_applies
from daemon.engine.code.task_code import CodeTask
from daemon.engine.code.worktrees import Cleanup, WorktreeManager
from daemon.engine.settings import TaskSettings
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import Store, TaskRow

__all__ = ["Erased", "cleanup_task", "erase_task", "kept_on_delete", "reconcile"]

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
    try:
        await store.set_task_code(task_id, {"cleanup": _summary(done)})
    except KeyError:
        log.info("task %s: deleted while its worktrees were removed", task_id)
        return done
    log.info(
        "task %s: removed %d worktree(s) and %d branch(es)",
        task_id,
        len(done.worktrees),
        len(done.branches),
    )
    return done


@dataclass(frozen=True)
class Erased:
    """What `erase_task` removed from a deleted code task's repository, and what it left."""

    repo: Path
    worktrees: int
    branches: tuple[str, ...]
    #: The result branch approved as a branch: the human's, never deleted.
    kept_branch: str | None
    #: Branches git would not delete (checked out in the user's tree, say), with git's reason.
    left: tuple[str, ...]


def kept_on_delete(code_json: str | None) -> str | None:
    """The branch a deleted task leaves: its result's, when the human approved it as a
    branch (`applied.how == "branch"`); a result merged, written as a patch or never
    approved goes with the task."""
    task = CodeTask.of(code_json)
    if task is None or task.applied != "branch":
        return None
    return task.result_branch


async def erase_task(root: Path, task_id: str, code_json: str | None) -> Erased | None:
    """Remove a deleted task's worktrees and branches, but the one `kept_on_delete` names;
    None for a text task or a repository that is gone. Safe to run again, and beside the
    task's own clean-up: git removes each thing once, and what is left is read back."""
    task = CodeTask.of(code_json)
    if task is None:
        return None
    if not await asyncio.to_thread(task.repo.is_dir):
        log.warning("task %s: its repository %s is gone; nothing to remove", task_id, task.repo)
        return None
    kept = kept_on_delete(code_json)
    manager = WorktreeManager(task.repo, root)
    before = {b for b in await manager.tierd_branches() if b.split("/")[1] == task_id}
    done = await manager.remove_task(task_id, (kept,) if kept else ())
    after = {b for b in await manager.tierd_branches() if b.split("/")[1] == task_id}
    left = tuple(why for why in done.left if why.split(":", 1)[0] in after)
    log.info(
        "task %s deleted: removed %d worktree(s) and %d branch(es)",
        task_id,
        len(done.worktrees),
        len(before - after),
    )
    return Erased(
        repo=task.repo,
        worktrees=len(done.worktrees),
        branches=tuple(sorted(before - after)),
        kept_branch=kept if kept in after else None,
        left=left,
    )


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
    # Deleted tasks first: a crash may have cut their deletion short after the commit.
    for task_id, data in (await store.deleted_tasks()).items():
        code = data.get("code") or {}
        if code.get("repo"):
            repos[Path(code["repo"])].append(task_id)
            if code.get("kept_branch"):
                kept.add(str(code["kept_branch"]))
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
        # Branches of tasks this store does not know (another home's, say) are not tierd's
        # to judge: kept. A task deleted here is known by its `task.deleted` event.
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
