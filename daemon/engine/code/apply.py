"""Merging a code task's result into the user's branch, durably: never twice, never half told.

The merge commit is made first, with plumbing that touches nothing of the user's
(`git merge-tree --write-tree` + `git commit-tree`, parents: their branch's commit and the
result's head). Its id is then recorded with the task (`code_json["applying"]`, the intent)
before their repository changes at all, and only then does their branch move to it, with
`git merge --ff-only`: one porcelain step that updates their index and working tree the way
a fast-forward does (keeping unrelated uncommitted work, refusing to overwrite a changed
file) and moves the branch last.

So a daemon killed at any point leaves one of: nothing changed (the intent names a commit
that is nowhere), or the branch at that commit (the fast-forward finished; the git process
runs in its own session and outlives the daemon). Which one is answered by
`git merge-base --is-ancestor COMMIT BRANCH`: at the next approval (`merge` returns
`already`) and at the daemon's next start (`reconcile_applies` records the approval that
landed). No second merge commit can appear: a retry finds the first one in the branch, and
a fast-forward never makes a commit.

Hooks: tierd's git runs with `core.hooksPath=/dev/null` (see `git`), so the user's hooks
(post-merge, reference-transaction, ...) never run from the daemon and cannot hold it; their
filters (smudge, e.g. git-lfs) do run, since their working tree needs the real content,
bounded by `MERGE_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon.engine.code.git import GitError, git, identity_env
from daemon.store.states import TaskState
from daemon.store.store import Store, TaskRow

__all__ = [
    "MERGE_TIMEOUT_S",
    "ApplyRefused",
    "Intent",
    "landed",
    "merge_result",
    "reconcile_applies",
]

log = logging.getLogger("tierd.code")

#: The fast-forward of the user's branch may run their checkout filters (git-lfs downloads).
MERGE_TIMEOUT_S = 600.0
_HEADS = "refs/heads/"


class ApplyRefused(RuntimeError):
    """Applying would touch the user's work (or git refused): nothing was changed."""

    def __init__(self, why: str, files: list[str] | None = None) -> None:
        self.why = why
        self.files = list(files or [])
        super().__init__(why)


@dataclass(frozen=True)
class Intent:
    """A merge about to land on the user's branch, recorded before their repository changes."""

    #: The user's branch (short name) and the commit it was at.
    branch: str
    onto: str
    #: The result merged (the task's result head) and the merge commit that lands it.
    head: str
    commit: str

    @classmethod
    def of(cls, code: dict[str, Any]) -> Intent | None:
        found = code.get("applying")
        if not isinstance(found, dict):
            return None
        try:
            return cls(**{k: str(found[k]) for k in ("branch", "onto", "head", "commit")})
        except KeyError:
            return None


async def _is_ancestor(repo: Path, a: str, b: str) -> bool:
    found = await git(repo, "merge-base", "--is-ancestor", a, b, check=False)
    return found.exit_code == 0


async def _branch_commit(repo: Path, branch: str) -> str | None:
    found = await git(
        repo, "rev-parse", "--verify", "--quiet", f"{_HEADS}{branch}^{{commit}}", check=False
    )
    return found.out.strip() if found.exit_code == 0 else None


async def landed(repo: Path, code: dict[str, Any], head: str) -> dict[str, Any] | None:
    """The recorded merge of `head` if it is in its branch (the apply happened), else None."""
    intent = Intent.of(code)
    if intent is None or intent.head != head:
        return None
    tip = await _branch_commit(repo, intent.branch)
    if tip is None or not await _is_ancestor(repo, intent.commit, tip):
        return None
    return {"how": "merge", "branch": intent.branch, "commit": intent.commit, "head": head}


async def _dirty(repo: Path) -> set[str]:
    """Paths the user changed and did not commit (staged or not, untracked included)."""
    out = await git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    entries = [e for e in out.out.split("\0") if e]
    return {e[3:] for e in entries if len(e) > 3 and e[2] == " "}


async def _merge_commit(repo: Path, mine: str, head: str, message: str) -> str:
    """The merge of `head` into `mine` as a commit (nothing of the user's is touched)."""
    merged = await git(
        repo, "merge-tree", "--write-tree", "--name-only", "-z", mine, head, check=False
    )
    parts = merged.out.split("\0")
    if merged.exit_code == 1:
        conflicted = parts[1 : parts.index("")] if "" in parts else parts[1:]
        raise ApplyRefused("it conflicts with commits made on your branch", conflicted)
    if merged.exit_code != 0:
        raise ApplyRefused(f"git could not merge: {merged.err.strip()}")
    named = (await git(repo, "config", "user.name", check=False)).out.strip()
    env = {} if named else identity_env("tierd")
    made = await git(
        repo, "commit-tree", parts[0], "-p", mine, "-p", head, env=env, stdin=message.encode()
    )
    return made.out.strip()


def _git_refusal(err: str) -> ApplyRefused:
    text = err.strip()
    if "index.lock" in text:
        return ApplyRefused(
            "another git process is working in your repository (its .git/index.lock exists); "
            "approve again once it has finished, or remove the lock if no git is running"
        )
    return ApplyRefused(f"git refused the merge: {text}")


async def merge_result(
    store: Store, row: TaskRow, repo: Path, head: str, files: list[str], message: str
) -> dict[str, Any]:
    """Merge the result `head` into the user's current branch, at most once.

    Returns what was done: {"how": "merge", "branch", "commit", "head"}, with "already": True
    when the branch already holds the result (an earlier apply, or the user's own merge).
    Raises `ApplyRefused` (nothing changed) when that would touch their uncommitted work in
    a file the result changes, conflict with their commits, or git refuses.
    """
    code = json.loads(row.code_json or "{}")
    done = await landed(repo, code, head)
    if done is not None:
        return {**done, "already": True}
    branch = (await git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)).out
    branch = branch.strip()
    if not branch:
        raise ApplyRefused("your repository has no current branch (a detached HEAD)")
    mine = (await git(repo, "rev-parse", "HEAD")).out.strip()
    if await _is_ancestor(repo, head, mine):
        return {"how": "merge", "branch": branch, "commit": mine, "head": head, "already": True}
    clash = sorted(await _dirty(repo) & set(files))
    if clash:
        raise ApplyRefused("it would overwrite your uncommitted changes", clash)
    intent = Intent.of(code)
    if intent is None or (intent.branch, intent.onto, intent.head) != (branch, mine, head):
        commit = await _merge_commit(repo, mine, head, message)
        intent = Intent(branch=branch, onto=mine, head=head, commit=commit)
        # Recorded before the user's repository changes: a kill from here on is found again.
        await store.set_task_code(row.id, {"applying": asdict(intent)})
    try:
        moved = await git(
            repo, "merge", "--ff-only", "--quiet", intent.commit,
            check=False, timeout_s=MERGE_TIMEOUT_S,
        )  # fmt: skip
    except GitError as exc:  # timed out: its filters never ended
        raise _git_refusal(exc.stderr) from None
    if moved.exit_code != 0:
        raise _git_refusal(moved.err or moved.out)
    return {"how": "merge", "branch": branch, "commit": intent.commit, "head": head}


async def reconcile_applies(store: Store) -> list[str]:
    """At start: a task whose approval merged its result into the user's branch but died
    before the approval was stored gets it stored now. Returns those tasks' ids."""
    found: list[str] = []
    for row in await store.code_tasks():
        if TaskState(row.state) != TaskState.awaiting_approval:
            continue
        code = json.loads(row.code_json or "{}")
        result = code.get("result") or {}
        if Intent.of(code) is None or not result.get("head") or not code.get("repo"):
            continue
        repo = Path(code["repo"])
        try:
            done = await landed(repo, code, str(result["head"]))
        except (GitError, OSError) as exc:
            log.warning("task %s: could not check its apply in %s: %s", row.id, repo, exc)
            continue
        if done is None:
            continue
        if (code.get("applied") or {}).get("head") != done["head"]:
            await store.set_task_code(row.id, {"applied": done})
            await store.append_event(row.id, "task.applied", {**done, "recovered": True})
        decision = {"decision": "approve", "comment": None}
        _, round_, recorded = await store.decide(
            row.id,
            decision,
            waiting=TaskState.awaiting_approval.value,
            reject_to=TaskState.merging.value,
        )
        if recorded:
            await store.append_event(row.id, "task.decision", {**decision, "revision": round_})
            log.info("task %s: its result was merged into %s before a restart", row.id, done)
        found.append(row.id)
    return found
