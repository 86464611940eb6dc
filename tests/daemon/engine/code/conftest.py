"""Fixtures of the code-task tests: a user's repository made for each test, and a way to prove
that nothing of it changed (working tree, index, HEAD, uncommitted edits, byte for byte).

The repository has what a real project has: tracked files, a `.gitignore`, a `.worktreeinclude`,
ignored files (`.env` with a planted key, `local/settings.txt`, a `.venv` with a tool), and the
user's work in progress (an unstaged edit, a staged edit, a locally changed tracked file that
`.worktreeinclude` names, an untracked file).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.git import run_git

#: The key planted in the user's ignored `.env`: no tool output may ever contain it.
PLANTED_KEY = "sk-planted-secret-4242"


COMMITTED = {
    "README.md": "# Demo\n",
    "src/app.py": "def greet(name):\n    return 'hello ' + name\n",
    "src/util.py": "VALUE = 1\n",
    "tests/test_app.py": "from src.app import greet\n\n\ndef test_greet():\n    assert greet('')\n",
    "config.json": '{"debug": false}\n',
    "docs/guide.md": "Guide.\n",
    ".gitignore": ".env\n.env.*\n.venv/\nnode_modules/\nlocal/\n*.log\n",
    ".worktreeinclude": ".env\nconfig.json\nlocal/\nnotes.txt\n",
}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    _write(root, COMMITTED)
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    # Ignored files a project needs to run (and a secret).
    _write(
        root,
        {
            ".env": f"OPENAI_API_KEY={PLANTED_KEY}\n",
            "local/settings.txt": "setting=1\n",
            "debug.log": "not included\n",
            ".venv/marker": "the user's venv\n",
            ".venv/bin/tool": "#!/bin/sh\necho tool-ran\n",
        },
    )
    (root / ".venv/bin/tool").chmod(0o755)
    # The user's work in progress.
    _write(root, {"src/util.py": "VALUE = 2\n"})
    run_git(root, "add", "src/util.py")
    _write(
        root,
        {
            "README.md": "# Demo\nuser edit in progress\n",
            "config.json": '{"debug": true}\n',
            "notes.txt": "untracked, not ignored\n",
        },
    )
    return root


def user_state(repo: Path) -> dict[str, bytes]:
    """Every file of the working tree (mode and bytes; links as links), the index and HEAD."""
    state: dict[str, bytes] = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        mode = path.lstat().st_mode
        if path.is_symlink():
            state[rel] = b"link:" + os.readlink(path).encode()
        elif path.is_file():
            state[rel] = oct(mode).encode() + b":" + path.read_bytes()
        else:
            state[rel] = oct(mode).encode()
    for rel in (".git/index", ".git/HEAD", ".git/refs/heads/main", ".git/config"):
        state[rel] = (repo / rel).read_bytes()
    return state


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path.resolve() / "user-repo")


@pytest.fixture
def wt_root(tmp_path: Path) -> Path:
    """Where worktrees go: like `$TIERD_HOME/worktrees`, outside the user's repository."""
    return tmp_path.resolve() / "home" / "worktrees"


@pytest.fixture
def git_in() -> Callable[..., str]:
    return run_git


@pytest.fixture
def state_of() -> Callable[[Path], dict[str, bytes]]:
    return user_state


@pytest.fixture
def planted_key() -> str:
    return PLANTED_KEY


@pytest.fixture
def bwrap() -> str:
    """The bubblewrap program: these tests FAIL (never skip) where it is missing."""
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail(
            "bubblewrap is not installed (no 'bwrap' on PATH): the sandbox tests need the "
            "package 'bubblewrap' (apt-get install -y bubblewrap)"
        )
    return found
