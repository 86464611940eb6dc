"""`task/delete`: an ended task and everything tierd keeps of it, gone.

Only a completed, failed or canceled task is deleted; a live one is refused with the
wrong-state error (-32002 / 409) naming its state: cancel it first. What goes:

- its rows in every table of the store, in one transaction that checks again that it has
  ended (`store.deletion`): of two racing deletions one deletes and the other is told the
  task is gone (-32001 / 404); nothing is ever deleted half;
- its LangGraph checkpoint thread, first: an ended task's checkpoints are never read again
  (the runner resumes only live tasks), so removing them before the commit hides nothing a
  user sees, and a crash right after leaves nothing behind;
- after the commit, its folder under the data directory (attachments and what was read out
  of them) and, for a code task, its worktrees and `tierd/<task>/...` branches, but the
  result branch the human approved as a branch (theirs now). The user's own branches and
  working tree are never touched, nor a patch file tierd wrote for them.

A crash between the commit and the files leaves what a start removes: the worktrees and
branches (the `task.deleted` event names the repository, see `engine.code.hygiene`) and the
folder (a folder without its task is swept, see `attachments.keeper`).

Before anything goes, the runner's last steps on a task that has just ended are waited out
(`Engine.settled`); deletions of one task take turns, and each runs
detached: a client that goes away does not stop one half way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from pydantic import BaseModel, Field

from daemon.engine.checkpoints import checkpoints_for, delete_thread, location
from daemon.engine.code.hygiene import erase_task
from daemon.home.paths import Homes
from daemon.service.admission import KeyLocks
from daemon.service.attachments.keeper import AttachmentKeeper
from daemon.service.detached import Detached
from daemon.service.errors import InvalidState, TaskNotFound
from daemon.service.params import TaskIdParams
from daemon.service.ports import Engine
from daemon.service.task_views import find_task
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import DeletedRows, Store, TaskNotEnded

__all__ = ["Deleted", "Deletion", "KeptForYou", "Removed"]

log = logging.getLogger("tierd.tasks")


class Removed(BaseModel):
    """What the deletion removed."""

    rows: dict[str, int] = Field(description="rows removed from the store, per table")
    folder: bool = Field(description="the task's folder (attachments, text read from them)")
    checkpoints: bool = Field(description="the task's workflow checkpoints")
    worktrees: int = Field(description="a code task's worktrees")
    branches: list[str] = Field(description="a code task's tierd branches")


class KeptForYou(BaseModel):
    """What stays because it is the user's."""

    branch: str | None = Field(description="the result branch approved as a branch: yours")
    patch: str | None = Field(description="the patch file written for you")
    left: list[str] = Field(
        description="tierd branches git would not delete (checked out in your tree), with why"
    )


class Deleted(BaseModel):
    """The answer of `task/delete` (`DELETE /v1/tasks/{task_id}`)."""

    task_id: str
    state: TaskState = Field(description="the state the task had ended in")
    removed: Removed
    kept: KeptForYou
    incomplete: list[str] = Field(
        description="what could not be removed now (the daemon's next start removes it)"
    )


def _live(task_id: str, state: str) -> InvalidState:
    return InvalidState(
        f"task {task_id} is {state}: only an ended task (completed, failed or canceled) can be "
        f"deleted; cancel it first (task/cancel, `tierd cancel {task_id}`)",
        {"task_id": task_id, "state": state},
    )


def _finishing(task_id: str, owner: str) -> InvalidState:
    return InvalidState(
        f"task {task_id} has ended, but its run is still finishing in another daemon "
        f"({owner}) sharing the store; delete it again in a few seconds",
        {"task_id": task_id, "daemon": owner},
    )


def _gone(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"task {task_id} was deleted meanwhile", {"task_id": task_id})


async def _patch_of(code_json: str | None) -> str | None:
    """The patch file an approval wrote for the user, if it is still there (it stays)."""
    code = json.loads(code_json) if code_json else {}
    applied = code.get("applied") if isinstance(code, dict) else None
    if isinstance(applied, dict) and applied.get("how") == "patch" and applied.get("path"):
        path = str(applied["path"])
        return path if await asyncio.to_thread(Path(path).is_file) else None
    return None


class Deletion:
    """`task/delete`."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        keeper: AttachmentKeeper,
        detached: Detached,
        homes: Homes,
    ) -> None:
        self._store = store
        self._engine = engine
        self._keeper = keeper
        self._detached = detached
        self._checkpoints = checkpoints_for(store.url, homes.checkpoints)
        self._worktrees = homes.worktrees
        # One deletion per task at a time: the second finds the task gone, not half deleted.
        self._turns = KeyLocks()

    async def delete(self, params: TaskIdParams) -> Deleted:
        row = await find_task(self._store, params.task_id)
        if TaskState(row.state) not in TERMINAL:
            raise _live(row.id, row.state)
        return await self._detached.run(self._delete_in_turn(row.id))

    async def _not_finishing_elsewhere(self, task_id: str) -> None:
        """Refuse while another daemon sharing the store still holds the ended task's lease:
        its run writes a last checkpoint and cleans up after the final state (it hands the
        lease back then, or the lease expires if it died); `settled` waits only for this
        daemon's runs."""
        lease = self._store.lease
        if lease is None:
            return
        held = await self._store.lease_of(task_id)
        if held is not None and held[0] != lease.owner and held[1] > 0:
            raise _finishing(task_id, held[0])

    async def _delete_in_turn(self, task_id: str) -> Deleted:
        async with self._turns.hold(task_id):
            if await self._store.get_task(task_id) is None:
                raise _gone(task_id)  # a racing deletion came first
            await self._engine.settled(task_id)
            await self._not_finishing_elsewhere(task_id)
            incomplete: list[str] = []
            checkpoints = False
            try:
                checkpoints = await delete_thread(self._checkpoints, task_id)
            except Exception as exc:
                log.warning("task %s: its checkpoints were not deleted: %s", task_id, exc)
                incomplete.append(f"checkpoints in {location(self._checkpoints)}: {exc}")
            try:
                gone = await self._store.delete_ended_task(task_id)
            except KeyError:
                raise _gone(task_id) from None
            except TaskNotEnded as exc:  # cannot happen (an ended task stays ended): refuse
                raise _live(task_id, exc.state) from None
            log.info("task %s: deleted (it was %s)", task_id, gone.state)
            return await self._files(gone, checkpoints, incomplete)

    async def _files(self, gone: DeletedRows, checkpoints: bool, incomplete: list[str]) -> Deleted:
        """The files, once the rows are gone; what fails is said and left to the next start."""
        task_id = gone.task_id
        folder = False
        try:
            folder = await self._keeper.remove(task_id)
        except Exception as exc:
            log.warning("task %s: its folder was not removed: %s", task_id, exc)
            incomplete.append(f"the task's folder: {exc}")
        erased = None
        try:
            erased = await erase_task(self._worktrees, task_id, gone.code_json)
        except Exception as exc:
            log.warning("task %s: its worktrees and branches were not removed: %s", task_id, exc)
            incomplete.append(f"worktrees and branches: {exc}")
        return Deleted(
            task_id=task_id,
            state=TaskState(gone.state),
            removed=Removed(
                rows=gone.rows,
                folder=folder,
                checkpoints=checkpoints,
                worktrees=erased.worktrees if erased else 0,
                branches=list(erased.branches) if erased else [],
            ),
            kept=KeptForYou(
                branch=erased.kept_branch if erased else None,
                patch=await _patch_of(gone.code_json),
                left=list(erased.left) if erased else [],
            ),
            incomplete=incomplete,
        )
