"""A code task's merged result as the human meets it: its diff, and applying it on approval.

Approval is the moment of governance: the agents worked alone, the human decides what enters
their repository, and how (`apply`):
- `branch` (the default): nothing moves; the result stays on `tierd/<task>/_result` for the
  user to merge or open a pull request from;
- `merge`: merged into the user's current branch, only when that cannot touch their work: a
  file they changed and did not commit, or a conflict with commits they made meanwhile, is a
  refusal (-32002 / 409) naming the files, and nothing is written;
- `patch`: a patch file (`git diff --binary`) under tierd's data directory, its path returned.

Applying twice is applying once: a result already in the user's branch is not merged again (a
retried approval, or one whose daemon died between the merge and the decision being stored).
The merge is made durable in `daemon.engine.code.apply`: its commit is recorded with the task
before the user's repository changes, so whether it landed is a question git answers.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Literal

from daemon.engine.code.apply import ApplyRefused, landed, merge_result
from daemon.engine.code.git import git
from daemon.service.errors import InvalidParams, InvalidState
from daemon.service.results import DiffFile, TaskDiff
from daemon.store.store import Store, TaskRow

__all__ = ["ApplyHow", "applied_to_branch", "apply_result", "result_diff"]

ApplyHow = Literal["branch", "merge", "patch"]
#: Largest patch returned in a diff answer (the file list is always whole).
MAX_PATCH_BYTES = 5_000_000


def _result(row: TaskRow, field: str) -> tuple[Path, str, dict[str, Any]]:
    """The task's repository, base commit and merged result; refusals name `field`."""
    code = json.loads(row.code_json) if row.code_json else None
    if not code:
        raise InvalidParams(
            f"{field}: task {row.id} is not a code task (it has no repository)",
            {"field": field, "task_id": row.id},
        )
    result = code.get("result")
    if not result:
        raise InvalidState(
            f"task {row.id} has no merged result yet (state {row.state})",
            {"task_id": row.id, "state": row.state},
        )
    base = str(code.get("snapshot_commit") or code["base_commit"])
    return Path(code["repo"]), base, dict(result)


async def result_diff(row: TaskRow) -> TaskDiff:
    """The merged result against the task's base: the files with +/-, and the patch."""
    repo, base, result = _result(row, "task_id")
    head = str(result["head"])
    stat = await git(repo, "diff", "--numstat", "-z", "--no-renames", base, head, "--")
    files = []
    for entry in stat.out.split("\0"):
        if entry:
            added, deleted, path = entry.split("\t", 2)
            files.append(
                DiffFile(
                    path=path,
                    insertions=int(added) if added.isdigit() else None,
                    deletions=int(deleted) if deleted.isdigit() else None,
                )
            )
    patch = await git(
        repo, "diff", "--no-color", "--no-ext-diff", "--binary", base, head, "--",
        max_output_bytes=MAX_PATCH_BYTES,
    )  # fmt: skip
    return TaskDiff(
        task_id=row.id,
        branch=str(result["branch"]),
        base_commit=base,
        head=head,
        files=files,
        patch=patch.out,
        truncated=patch.truncated,
    )


async def apply_result(row: TaskRow, how: ApplyHow, patches: Path, store: Store) -> dict[str, Any]:
    """Apply the task's merged result `how`; what was done (recorded with the task).

    A merge that already landed (an earlier approval whose daemon died before it was
    stored) is not made again, whatever `how` asks now: it comes back with "already".
    """
    repo, base, result = _result(row, "apply")
    head = str(result["head"])
    done = await landed(repo, json.loads(row.code_json or "{}"), head)
    if done is not None:
        return {**done, "already": True}
    if how == "branch":
        return {"how": "branch", "branch": result["branch"], "head": head}
    if how == "patch":
        path = await _write_patch(repo, base, head, patches, row.id)
        return {"how": "patch", "path": str(path), "head": head}
    return await _merge(store, repo, head, list(result.get("files") or []), row)


async def applied_to_branch(row: TaskRow) -> dict[str, Any] | None:
    """The merge of the task's current result into the user's branch, if one landed."""
    code = json.loads(row.code_json or "{}")
    head = (code.get("result") or {}).get("head")
    if not head or not code.get("repo"):
        return None
    return await landed(Path(code["repo"]), code, str(head))


async def _write_patch(repo: Path, base: str, head: str, patches: Path, task_id: str) -> Path:
    patch = await git(repo, "diff", "--no-color", "--no-ext-diff", "--binary", base, head, "--")
    path = patches / f"{task_id}.patch"

    def write() -> None:
        patches.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(patch.out)

    await asyncio.to_thread(write)
    return path


async def _merge(
    store: Store, repo: Path, head: str, files: list[str], row: TaskRow
) -> dict[str, Any]:
    message = f"Merge tierd task {row.id}: {row.goal.strip().splitlines()[0][:72]}\n"
    try:
        return await merge_result(store, row, repo, head, files, message)
    except ApplyRefused as refused:
        raise _refused(row, refused.why, refused.files) from None


def _refused(row: TaskRow, why: str, files: list[str]) -> InvalidState:
    named = f": {', '.join(files)}" if files else ""
    return InvalidState(
        f"task {row.id}: cannot apply the result to your branch, {why}{named}. Nothing was "
        "changed; commit or stash your work, or approve with apply 'branch' or 'patch'",
        {"task_id": row.id, "state": row.state, "files": files},
    )
