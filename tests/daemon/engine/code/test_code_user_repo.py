"""The promise to the user: whatever code tasks do, their repository's working tree, index,
HEAD and work in progress stay exactly as they were, byte for byte.

One run through everything: validate (with and without the uncommitted snapshot), worktrees
from the base and from merged dependencies, preparation, every writing tool, a sandboxed
command that tries to write into the user's repository, commits, removal and reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from daemon.engine.code import tools
from daemon.engine.code.paths import PathGlobs
from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.sandbox import SandboxPolicy
from daemon.engine.code.tools import Workspace
from daemon.engine.code.worktrees import WorktreeManager, validate_repo

PATCH = (
    "diff --git a/src/util.py b/src/util.py\n"
    "--- a/src/util.py\n+++ b/src/util.py\n@@ -1 +1,2 @@\n VALUE = 1\n+OTHER = 2\n"
)


async def test_nothing_of_the_user_repository_changes(
    user_repo: Path,
    wt_root: Path,
    bwrap: str,
    state_of: Callable[[Path], dict[str, bytes]],
    git_in: Callable[..., str],
) -> None:
    # (git status may refresh the index's stat data: before the snapshot, not between.)
    status = git_in(user_repo, "status", "--porcelain=v1", "--untracked-files=all")
    before = state_of(user_repo)
    await validate_repo(user_repo, include_uncommitted=True)
    repo = await validate_repo(user_repo)
    wm = WorktreeManager(repo.path, wt_root)
    streams = {}
    for sid in ("a", "b"):
        wt = await wm.create("t1", sid, base=repo.base_commit)
        prep = await prepare_worktree(repo.path, wt.path, link_dirs=[".venv"])
        ws = Workspace(
            root=wt.path,
            git_dir=wt.git_dir,
            ownership=PathGlobs(["src/", "README.md"]),
            sandbox=prep.sandbox(wt.path, SandboxPolicy(timeout_s=20)),
            allow_shell=True,
        )
        streams[sid] = (wt, prep, ws)
    wt, prep, ws = streams["a"]
    assert (await tools.write_file(ws, "README.md", "rewritten by a\n")).ok
    assert (await tools.edit_file(ws, "src/app.py", "'hello '", "'hi '")).ok
    assert (await tools.apply_patch(ws, PATCH)).ok
    attack = (
        f"echo pwned > {user_repo}/README.md; echo pwned > {user_repo}/.venv/marker; "
        f"rm -f {user_repo}/.git/index; git -C {user_repo} add -A; echo done"
    )
    assert "done" in (await tools.run_command(ws, "shell", attack)).output
    await wm.commit(wt, "a", exclude=prep.commit_excludes())
    wt_b, prep_b, ws_b = streams["b"]
    assert (await tools.write_file(ws_b, "src/b.py", "B = 1\n")).ok
    await wm.commit(wt_b, "b", exclude=prep_b.commit_excludes())
    await wm.create("t1", "c", base=repo.base_commit, depends_on=[wt.branch, wt_b.branch])
    await wm.remove_task("t1", keep_branches=[wt.branch])
    await wm.reconcile([], keep_branches=[wt.branch])

    assert state_of(user_repo) == before
    assert git_in(user_repo, "status", "--porcelain=v1", "--untracked-files=all") == status
    assert git_in(user_repo, "show", f"{wt.branch}:README.md") == "rewritten by a\n"
