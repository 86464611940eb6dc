"""The cluster's stream worker, in process: snapshots, bundles, and a worktree made again elsewhere.

`StreamWorker` is a plain class (the driver makes it a Ray actor), so its durability mechanism
is tested here without a cluster: two workers with different work directories stand for two
nodes, and the user's repository plays the daemon's side (bundles fetched into it as
`RaySite` does). The end-to-end tests (`test_ray_streams`) run the same class on Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config.schema import load_defaults
from daemon.engine.code.ray.bundles import create_bundle, fetch_bundle
from daemon.engine.code.ray.sites import snapshot_ref
from daemon.engine.code.ray.worker import (
    MUTATING_TOOLS,
    READING_TOOLS,
    SNAPSHOT_REF,
    OpenSpec,
    StepDone,
    StreamWorker,
)
from daemon.engine.code.settings import CodeSettings
from daemon.engine.code.sites import SiteRequest
from daemon.engine.code.toolspec import TOOLS
from daemon.engine.code.worktrees import branch_name

TASK, STREAM = "t1", "impl"
BRANCH = branch_name(TASK, STREAM)
REF = snapshot_ref(TASK, STREAM)


def request(repo: Path) -> SiteRequest:
    flat = {**load_defaults(), "code.allow_shell": True}
    return SiteRequest(
        task_id=TASK,
        stream_id=STREAM,
        repo=repo,
        base="HEAD",
        depends_on=(),
        ownership=("src/**",),
        settings=CodeSettings.from_flat(flat),
        hide=(),
    )


async def open_on(
    node: Path, repo: Path, git_in: Callable[..., str], snapshot: str | None = None
) -> StreamWorker:
    """A worker on `node` for the stream, from the daemon's copy (the user's repository)."""
    start = git_in(repo, "rev-parse", "main").strip()
    refs = [f"refs/heads/{BRANCH}"] + ([REF] if snapshot else [])
    bundle = await create_bundle(repo, refs)
    worker = StreamWorker(str(node))
    await worker.open(OpenSpec(request(repo), BRANCH, start, snapshot), bundle)
    return worker


async def saved(repo: Path, done: StepDone) -> str | None:
    """What the daemon does before the step is saved: fetch the snapshot's bundle."""
    if done.bundle is not None:
        await fetch_bundle(repo, done.bundle, [f"+{SNAPSHOT_REF}:{REF}"])
    return done.snapshot


async def test_a_worktree_made_again_on_another_node_is_the_last_saved_one(
    user_repo: Path,
    tmp_path: Path,
    git_in: Callable[..., str],
    state_of: Callable[[Path], dict[str, bytes]],
    bwrap: str,
) -> None:
    before = state_of(user_repo)
    git_in(user_repo, "branch", BRANCH, "main")
    one = await open_on(tmp_path / "node1", user_repo, git_in)
    wrote = await one.tool("write_file", '{"path": "src/new.py", "content": "NEW = 1\\n"}')
    assert wrote.result.ok and wrote.bundle is not None
    first = await saved(user_repo, wrote)
    # A read changes nothing: no snapshot, no bundle.
    read = await one.tool("read_file", '{"path": "src/new.py"}')
    assert read.bundle is None and read.snapshot == first
    edited = await one.tool("edit_file", '{"path": "src/app.py", "old": "hello", "new": "hi"}')
    second = await saved(user_repo, edited)
    assert second not in (None, first)
    # The snapshots chain (the first is the second's parent) and carry only new objects.
    assert git_in(user_repo, "rev-parse", f"{second}^").strip() == first
    assert len(edited.bundle or b"") < 4096
    # A command that changes nothing leaves the snapshot as it was.
    ran = await one.tool("run_command", '{"name": "shell", "command": "true"}')
    assert ran.result.exit_code == 0 and ran.bundle is None and ran.snapshot == second

    # Node 1 is gone; node 2 makes the worktree from the branch and the last saved snapshot.
    two = await open_on(tmp_path / "node2", user_repo, git_in, snapshot=second)
    app = await two.tool("read_file", '{"path": "src/app.py"}')
    assert "return 'hi ' + name" in app.result.output
    new = await two.tool("read_file", '{"path": "src/new.py"}')
    assert "NEW = 1" in new.result.output
    # The changes are the worktree's, uncommitted: HEAD is still the branch's start.
    listed = await two.run("git status --porcelain --untracked-files=all")
    assert sorted(listed.output.split("\n")[:2]) == [" M src/app.py", "?? src/new.py"]

    made, bundle = await two.commit("half", (), "")
    assert made.committed and set(made.files) == {"src/app.py", "src/new.py"}
    assert bundle is not None
    heads = f"refs/heads/{BRANCH}"
    await fetch_bundle(user_repo, bundle, [f"+{heads}:{heads}"])
    assert git_in(user_repo, "rev-parse", BRANCH).strip() == made.head
    assert git_in(user_repo, "show", f"{BRANCH}:src/new.py") == "NEW = 1\n"
    # Nothing of the user's working tree, index or HEAD changed on the way.
    assert state_of(user_repo) == before
    await one.close()
    await two.close()
    assert not (tmp_path / "node1" / TASK / STREAM).exists()


async def test_a_worker_leaves_the_setup_s_files_out_of_its_snapshots(
    user_repo: Path, tmp_path: Path, git_in: Callable[..., str], bwrap: str
) -> None:
    git_in(user_repo, "branch", BRANCH, "main")
    worker = await open_on(tmp_path / "node", user_repo, git_in)
    done = await worker.setup("mkdir -p build && echo x > build/out.txt")
    assert done["exit_code"] == 0 and done["artifacts"] == ["build/out.txt"]
    wrote = await worker.tool("write_file", '{"path": "src/a.py", "content": "A = 1\\n"}')
    await saved(user_repo, wrote)
    files = git_in(user_repo, "ls-tree", "-r", "--name-only", REF).split()
    assert "src/a.py" in files and "build/out.txt" not in files
    await worker.close()


@pytest.mark.parametrize("method", ["tool", "run", "commit", "setup"])
async def test_a_worker_that_is_not_open_says_so(method: str) -> None:
    worker = StreamWorker("")
    args = {"tool": ("read_file", "{}"), "run": ("true",), "commit": ("", (), ""), "setup": (":",)}
    with pytest.raises(RuntimeError, match="not open"):
        await getattr(worker, method)(*args[method])


async def test_the_setup_again_on_another_node_never_takes_the_coder_s_files_for_its_own(
    user_repo: Path, tmp_path: Path, git_in: Callable[..., str], bwrap: str
) -> None:
    git_in(user_repo, "branch", BRANCH, "main")
    one = await open_on(tmp_path / "node1", user_repo, git_in)
    first = await one.setup("mkdir -p build && echo x > build/out.txt")
    assert first["artifacts"] == ["build/out.txt"]
    snapshot = await saved(
        user_repo, await one.tool("write_file", '{"path": "src/new.py", "content": "NEW = 1\\n"}')
    )
    # Node 1 dies; node 2 restores the snapshot and runs the setup again, as `RaySite` does:
    # with the first record's artifacts, not what differs from HEAD (the coder's file too).
    two = await open_on(tmp_path / "node2", user_repo, git_in, snapshot=snapshot)
    again = await two.setup(first["command"], tuple(first["artifacts"]))
    assert again["exit_code"] == 0 and again["artifacts"] == ["build/out.txt"]
    edited = await two.tool("write_file", '{"path": "src/new.py", "content": "NEW = 2\\n"}')
    assert edited.bundle is not None
    made, _ = await two.commit("done", (), "")
    assert made.committed and "src/new.py" in made.files and "build/out.txt" not in made.files
    await one.close()
    await two.close()


async def test_a_worker_serves_its_next_stream_with_nothing_of_the_last(
    user_repo: Path, tmp_path: Path, git_in: Callable[..., str], bwrap: str
) -> None:
    git_in(user_repo, "branch", BRANCH, "main")
    worker = await open_on(tmp_path / "node", user_repo, git_in)
    await worker.setup("echo x > src/gen.py")  # the setup makes src/gen.py for this stream
    await worker.close()
    # The same worker, from the pool, for another task's stream without a setup.
    other = branch_name("t2", "s2")
    git_in(user_repo, "branch", other, "main")
    r = replace(request(user_repo), task_id="t2", stream_id="s2")
    start = git_in(user_repo, "rev-parse", "main").strip()
    bundle = await create_bundle(user_repo, [f"refs/heads/{other}"])
    await worker.open(OpenSpec(r, other, start, None), bundle)
    await worker.tool("write_file", '{"path": "src/gen.py", "content": "MINE = 1\\n"}')
    made, _ = await worker.commit("done", (), "")
    assert made.committed and made.files == ("src/gen.py",)
    await worker.close()


def test_every_tool_is_known_to_change_the_worktree_or_only_to_read_it() -> None:
    # A new tool missing from both lists would change files without a snapshot after it.
    assert MUTATING_TOOLS | READING_TOOLS == set(TOOLS)
    assert not MUTATING_TOOLS & READING_TOOLS
