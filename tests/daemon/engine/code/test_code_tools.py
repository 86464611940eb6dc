"""The executor's tools on a real worktree: bounded reads, searches and listings; writes only
within ownership; no path out of the worktree; secrets withheld; commands in the sandbox; and
the schemas and dispatch the model loop uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.engine.code import tools
from daemon.engine.code.paths import PathGlobs, PathRefused, confine
from daemon.engine.code.preparation import prepare_worktree
from daemon.engine.code.sandbox import SandboxPolicy
from daemon.engine.code.tools import ToolLimits, ToolResult, Workspace
from daemon.engine.code.toolspec import TOOLS, call_tool, tool_schemas
from daemon.engine.code.worktrees import WorktreeManager


@pytest.fixture
async def ws(user_repo: Path, wt_root: Path, bwrap: str) -> Workspace:
    wt = await WorktreeManager(user_repo, wt_root).create("t1", "a", base="HEAD")
    prep = await prepare_worktree(user_repo, wt.path, link_dirs=[".venv"])
    (wt.path / "src" / "big.py").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    return Workspace(
        root=wt.path,
        git_dir=wt.git_dir,
        ownership=PathGlobs(["src/", "tests/test_*.py"]),
        sandbox=prep.sandbox(wt.path, SandboxPolicy(timeout_s=20)),
        test_command="test -f src/app.py && echo tests-pass",
        limits=ToolLimits(read_lines=50, search_hits=5, list_entries=100),
    )


async def test_writes_outside_ownership_are_refused(ws: Workspace) -> None:
    ok = await tools.write_file(ws, "src/feature.py", "x = 1\n")
    assert ok.ok and ok.path == "src/feature.py" and (ws.root / "src/feature.py").exists()
    assert (await tools.write_file(ws, "tests/test_feature.py", "def test(): pass\n")).ok
    for call in (
        tools.write_file(ws, "README.md", "mine now\n"),
        tools.write_file(ws, "docs/new.md", "x\n"),
        tools.edit_file(ws, "README.md", "# Demo", "# Mine"),
    ):
        refused = await call
        assert not refused.ok and "outside this stream's ownership" in refused.output
        assert "src/" in refused.output and "finish summary" in refused.output
    assert (ws.root / "README.md").read_text() == "# Demo\n"
    assert not (ws.root / "docs" / "new.md").exists()
    nothing = Workspace(root=ws.root, git_dir=ws.git_dir, ownership=PathGlobs([]))
    assert "owns no paths" in (await tools.write_file(nothing, "src/x.py", "x\n")).output


async def test_paths_cannot_leave_the_worktree(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("outside\n")
    (ws.root / "src" / "out").symlink_to(tmp_path)
    for path in ("../../outside.txt", "/etc/passwd", "src/out/outside.txt", "~/x", ".git/config",
                 ".venv/marker", "src/../../x"):  # fmt: skip
        for result in (
            await tools.read_file(ws, path),
            await tools.write_file(ws, path, "x\n"),
            await tools.list_files(ws, path),
        ):
            assert not result.ok and result.output.startswith("refused:"), (path, result)
    assert (tmp_path / "outside.txt").read_text() == "outside\n"
    # Inside is fine, however it is spelled.
    assert (await tools.read_file(ws, "./src/../src/app.py")).ok
    with pytest.raises(PathRefused):
        confine(ws.root, "")


async def test_secrets_are_withheld(ws: Workspace, planted_key: str) -> None:
    (ws.root / "src" / "server.pem").write_text(f"KEY {planted_key}\n")
    read = await tools.read_file(ws, ".env")
    assert not read.ok and "exists but its content is withheld" in read.output
    assert planted_key not in read.output
    assert "does not exist" in (await tools.read_file(ws, "config/.env")).output
    found = await tools.search(ws, planted_key, fixed=True)
    assert found.ok and planted_key not in found.output and found.output.startswith("0 matches")
    edit = await tools.edit_file(ws, "src/server.pem", "KEY", "K")
    assert not edit.ok and "withheld" in edit.output
    listed = await tools.list_files(ws)
    assert "src/server.pem" not in listed.output and "src/app.py" in listed.output
    # A link to a secret is withheld too.
    (ws.root / "src" / "notes.txt").symlink_to(ws.root / ".env")
    assert "withheld" in (await tools.read_file(ws, "src/notes.txt")).output
    results = [read, found, edit, listed]
    assert all(planted_key not in json.dumps(r.as_dict()) for r in results)


async def test_read_is_bounded_with_line_ranges(ws: Workspace) -> None:
    first = await tools.read_file(ws, "src/big.py")
    assert first.ok and first.truncated
    assert "1000 lines, showing 1-50" in first.output and "start_line=51" in first.output
    assert "     1\tline 1" in first.output and "line 51" not in first.output
    part = await tools.read_file(ws, "src/big.py", start_line=990, max_lines=5)
    assert "showing 990-994" in part.output and "line 994" in part.output
    assert "line 995" not in part.output
    end = await tools.read_file(ws, "src/big.py", start_line=998)
    assert not end.truncated and "line 1000" in end.output
    assert "is a directory" in (await tools.read_file(ws, "src")).output


async def test_search_and_list_are_bounded(ws: Workspace) -> None:
    found = await tools.search(ws, r"^line [0-9]+$", path="src")
    assert found.ok and found.truncated and found.output.count("src/big.py:") == 5
    assert "narrow" in found.output
    one = await tools.search(ws, "return 'hello ", fixed=True)
    assert "src/app.py:2: " in one.output
    (ws.root / "src" / "fresh.py").write_text("UNIQUE_TOKEN = 1\n")
    assert "src/fresh.py:1:" in (await tools.search(ws, "UNIQUE_TOKEN")).output
    bad = await tools.search(ws, "(unclosed")
    assert not bad.ok and "search failed" in bad.output
    listed = await tools.list_files(ws, "src", pattern="*.py")
    assert listed.output.splitlines()[0] == "4 files under src matching *.py"
    assert ".env" not in (await tools.list_files(ws)).output


async def test_edit_needs_one_exact_match(ws: Workspace) -> None:
    done = await tools.edit_file(ws, "src/app.py", "'hello '", "'hi '")
    assert done.ok and "line 2" in done.output
    assert "'hi '" in (ws.root / "src" / "app.py").read_text()
    missing = await tools.edit_file(ws, "src/app.py", "not there", "x")
    assert not missing.ok and "not found" in missing.output
    many = await tools.edit_file(ws, "src/big.py", "line 1", "x")
    assert not many.ok and "occurs" in many.output and "unique" in many.output
    assert "use write_file" in (await tools.edit_file(ws, "src/nope.py", "a", "b")).output


async def test_apply_patch_within_ownership(ws: Workspace) -> None:
    patch = (
        "diff --git a/src/util.py b/src/util.py\n"
        "--- a/src/util.py\n+++ b/src/util.py\n@@ -1 +1,2 @@\n VALUE = 1\n+OTHER = 2\n"
    )
    done = await tools.apply_patch(ws, patch)
    assert done.ok, done.output
    assert (ws.root / "src" / "util.py").read_text() == "VALUE = 1\nOTHER = 2\n"
    outside = patch.replace("src/util.py", "README.md").replace("VALUE = 1", "# Demo")
    refused = await tools.apply_patch(ws, outside)
    assert not refused.ok and "ownership" in refused.output
    assert (ws.root / "README.md").read_text() == "# Demo\n"
    stale = await tools.apply_patch(ws, patch)
    assert not stale.ok and "does not apply" in stale.output
    assert "does not parse" in (await tools.apply_patch(ws, "not a patch")).output


async def test_commands_run_in_the_sandbox(ws: Workspace) -> None:
    done = await tools.run_command(ws, "test")
    assert done.ok and done.exit_code == 0 and "tests-pass" in done.output
    assert done.command == ws.test_command and done.duration_s is not None
    lint = await tools.run_command(ws, "lint")
    assert not lint.ok and "no lint command" in lint.output and "available: test" in lint.output
    shell = await tools.run_command(ws, "shell", "echo hi")
    assert not shell.ok and "allow_shell" in shell.output
    open_ws = replace(ws, allow_shell=True)
    ran = await tools.run_command(open_ws, "shell", "tool; exit 3")
    assert not ran.ok and ran.exit_code == 3 and "tool-ran" in ran.output


async def test_finish(ws: Workspace) -> None:
    done = await tools.finish(ws, "  Added a feature.  ")
    assert done.finished and done.ok and done.output == "Added a feature."
    assert ToolResult.from_dict(done.as_dict()) == done


async def test_schemas_and_dispatch(ws: Workspace) -> None:
    schemas = tool_schemas()
    assert [s["function"]["name"] for s in schemas] == list(TOOLS)
    for s in schemas:
        assert s["type"] == "function" and s["function"]["description"]
        params = s["function"]["parameters"]
        assert params["type"] == "object" and "title" not in json.dumps(params)
    runs = [s for s in tool_schemas(ws) if s["function"]["name"] == "run_command"]
    assert runs[0]["function"]["parameters"]["properties"]["name"]["enum"] == ["test"]
    bare = Workspace(root=ws.root, git_dir=ws.git_dir, ownership=ws.ownership)
    assert "run_command" not in [s["function"]["name"] for s in tool_schemas(bare)]

    read = await call_tool(ws, "read_file", '{"path": "src/app.py", "max_lines": 1}')
    assert read.ok and "def greet" in read.output
    assert "unknown tool" in (await call_tool(ws, "rm_rf", "{}")).output
    assert "bad arguments" in (await call_tool(ws, "read_file", "{not json")).output
    assert "bad arguments" in (await call_tool(ws, "read_file", "{}")).output
    assert "bad arguments" in (await call_tool(ws, "read_file", '{"path": "a", "x": 1}')).output
    assert (await call_tool(ws, "list_files", None)).ok
    assert (await call_tool(ws, "finish", {"summary": "done"})).finished


async def test_a_rewritten_dot_git_runs_nothing_outside(
    user_repo: Path, wt_root: Path, tmp_path: Path, git_in: Callable[..., str], bwrap: str
) -> None:
    """A command may rewrite the worktree's `.git` file (the worktree is writable) to point at
    a git directory of its own whose config runs code (`core.fsmonitor`): the daemon's git must
    never read it, or that code would run outside the sandbox."""
    wm = WorktreeManager(user_repo, wt_root)
    wt = await wm.create("t1", "a", base="HEAD")
    ws = Workspace(
        root=wt.path, git_dir=wt.git_dir, ownership=PathGlobs(["src/"]), allow_shell=True
    )
    pwned = tmp_path / "PWNED"
    attack = (
        "mkdir -p evil/objects evil/refs/heads && echo 'ref: refs/heads/main' > evil/HEAD && "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {pwned}; false\\n'"
        ' > evil/config && echo "gitdir: $PWD/evil" > .git && echo rewritten'
    )
    done = await tools.run_command(ws, "shell", attack)
    assert done.ok and "rewritten" in done.output, done.output
    (wt.path / "src" / "app.py").write_text("changed\n")
    assert (await tools.list_files(ws)).ok
    assert (await tools.search(ws, "changed")).ok
    committed = await wm.commit(wt, exclude=["evil", ".git"])
    assert committed.committed and committed.files == ("src/app.py",)
    assert git_in(user_repo, "rev-parse", wt.branch).strip() == committed.head
    assert not pwned.exists()
    # The attack is real: git finding its directory through `.git` runs the planted command.
    git_in(wt.path, "ls-files")
    assert pwned.exists()
    pwned.unlink()
    removed = await wm.remove_task("t1")
    assert removed.branches == (wt.branch,) and not wt.path.exists() and not pwned.exists()
