"""A fresh worktree made runnable: `.worktreeinclude` copies ignored files only (never a tracked
one), `link_dirs` share the user's dependency directories without copying (and stay out of
commits), and the secret globs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from daemon.engine.code.preparation import (
    DEFAULT_SECRET_GLOBS,
    included_files,
    prepare_worktree,
    secret_globs,
)
from daemon.engine.code.sandbox import SandboxPolicy
from daemon.engine.code.worktrees import WorktreeManager


async def test_worktreeinclude_copies_ignored_files_only(
    user_repo: Path, wt_root: Path, planted_key: str
) -> None:
    # .worktreeinclude names .env, config.json (tracked), local/ and notes.txt (not ignored).
    assert await included_files(user_repo) == [".env", "local/settings.txt"]
    wt = await WorktreeManager(user_repo, wt_root).create("t1", "a", base="HEAD")
    (wt.path / "local").mkdir()
    (wt.path / "local" / "settings.txt").write_text("already here\n")
    prep = await prepare_worktree(user_repo, wt.path)
    assert prep.copied == (".env",)
    assert planted_key in (wt.path / ".env").read_text()
    # Never overwritten, never a tracked file (the user's local edit of config.json stays theirs).
    assert (wt.path / "local" / "settings.txt").read_text() == "already here\n"
    assert any("local/settings.txt" in s for s in prep.skipped)
    assert (wt.path / "config.json").read_text() == '{"debug": false}\n'
    assert not (wt.path / "notes.txt").exists() and not (wt.path / "debug.log").exists()


async def test_link_dirs_share_without_copying_and_stay_out_of_commits(
    user_repo: Path, wt_root: Path, git_in: Callable[..., str]
) -> None:
    wm = WorktreeManager(user_repo, wt_root)
    wt = await wm.create("t1", "a", base="HEAD")
    prep = await prepare_worktree(user_repo, wt.path, link_dirs=[".venv", "node_modules", "../x"])
    venv = wt.path / ".venv"
    assert venv.is_symlink() and Path(os.readlink(venv)) == (user_repo / ".venv").resolve()
    assert [link.name for link in prep.linked] == [".venv"]
    assert len(prep.skipped) == 2  # node_modules is missing, ../x is outside
    base = SandboxPolicy()
    policy = prep.sandbox(wt.path, base)
    assert (user_repo / ".venv").resolve() in policy.read_only
    assert prep.git_dir is not None and prep.git_dir in policy.read_only
    assert policy.path_dirs[0] == venv / "bin" and base.read_only == ()
    # `.venv/` in .gitignore does not match a symlink: the commit must leave it out itself.
    (wt.path / "src" / "new.py").write_text("x = 1\n")
    done = await wm.commit(wt, exclude=prep.commit_excludes())
    assert done.files == ("src/new.py",)
    tree = git_in(wt.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert ".venv" not in tree and ".env" not in tree


def test_secret_globs() -> None:
    secrets = secret_globs()
    assert secrets.patterns == DEFAULT_SECRET_GLOBS
    for path in (".env", "app/.env", ".env.local", "certs/server.pem", "tls.key", "home/id_rsa"):
        assert secrets.matches(path), path
    for path in ("src/env.py", "README.md", "keys/readme.txt", "environment.md"):
        assert not secrets.matches(path), path
    assert secret_globs(["*.secret"]).matches("a/b.secret")
