"""`tierd submit --repo PATH [--base REF] [--include-uncommitted]` as a user runs it (a
subprocess, from the directory they are in) against a real daemon, with a real repository:
a relative PATH is taken from the CLI's working directory; `show` and `ls` name the
repository; bad flags and a bad repository say what is wrong with the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import DaemonProcess, daemon_on_simulator
from support.simulator import SLOW_MODELS

pytestmark = pytest.mark.slow

_IDENTITY = ("-c", "user.name=Test User", "-c", "user.email=test@example.com")
_IDENTITY += ("-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null")


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(
        ["git", *_IDENTITY, "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return done.stdout


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("VALUE = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), SLOW_MODELS) as d:
        yield d


def tierd(d: DaemonProcess, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tierd ARGS` run from `cwd`, the user's directory."""
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=cwd,
        env={**os.environ, "TIERD_HOME": str(d.home), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_relative_repo_is_taken_from_where_the_user_is(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "work" / "app")
    head = git(repo, "rev-parse", "HEAD").strip()
    here = tmp_path / "work"
    out = _json(tierd(daemon, here, "submit", "Add a feature", "--repo", "app", "--json"))
    task = _json(tierd(daemon, here, "show", out["task_id"], "--json"))
    assert task["code"]["repo"] == str(repo.resolve())
    assert task["code"]["repo_given"] == str(here / "app")
    assert task["code"]["base"] == "HEAD" and task["code"]["base_commit"] == head

    shown = tierd(daemon, here, "show", out["task_id"])
    assert shown.returncode == 0, shown.stderr
    assert f"repo {repo.resolve()}  base HEAD at {head[:12]}" in shown.stdout
    listed = tierd(daemon, here, "ls")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header == ["id", "state", "submitted", "repo", "goal"]
    (row,) = [line for line in listed.stdout.splitlines() if out["task_id"] in line]
    assert " app " in row and "Add a feature" in row


def test_base_and_uncommitted_changes_from_the_command_line(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "app")
    (repo / "app.py").write_text("VALUE = 2\n")  # uncommitted
    status = git(repo, "status", "--porcelain")
    out = _json(
        tierd(
            daemon,
            repo,
            "submit",
            "Use my edit",
            "--repo",
            ".",
            "--base",
            "main",
            "--include-uncommitted",
            "--json",
        )
    )
    code = _json(tierd(daemon, repo, "show", out["task_id"], "--json"))["code"]
    assert code["base"] == "main" and code["include_uncommitted"] is True
    assert git(repo, "show", f"{code['snapshot_commit']}:app.py") == "VALUE = 2\n"
    assert git(repo, "status", "--porcelain") == status
    shown = tierd(daemon, repo, "show", out["task_id"]).stdout
    assert f"uncommitted changes (snapshot {code['snapshot_commit'][:12]})" in shown


def test_bad_flags_and_a_bad_repository_say_what_is_wrong(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    def ids() -> set[str]:
        return {
            t["id"]
            for t in _json(tierd(daemon, tmp_path, "ls", "--json", "--limit", "500"))["tasks"]
        }

    before = ids()
    for args, words in [
        (["--base", "main"], "--base goes with --repo PATH"),
        (["--include-uncommitted"], "--include-uncommitted goes with --repo PATH"),
        (["--repo", " "], "--repo: give the path of a git work tree"),
    ]:
        proc = tierd(daemon, tmp_path, "submit", "Nothing", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)
    (tmp_path / "plain").mkdir()
    make_repo(tmp_path / "app")
    for args, words in [
        (["--repo", "plain"], f"repo: {tmp_path / 'plain'} is not a git work tree"),
        (["--repo", "app", "--base", "nope"], "base: 'nope' does not resolve to a commit"),
    ]:
        proc = tierd(daemon, tmp_path, "submit", "Nothing", *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)
    assert ids() == before
