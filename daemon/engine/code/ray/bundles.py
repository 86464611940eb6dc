"""Git bundles: how a repository's commits travel between the daemon and a cluster node.

A bundle is git's own file format for commits without a shared remote (`git bundle create`, then
`git fetch <file>`): the daemon sends a stream's branch to its node as one, and the node sends
back each saved state of the worktree and each commit as an incremental one (only the objects the
daemon does not have yet). Both sides use these two functions; the bytes go through Ray's object
store.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from daemon.engine.code.git import git

__all__ = ["create_bundle", "fetch_bundle"]


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="tierd-bundle-"))


async def create_bundle(repo: Path, refs: Sequence[str], have: Sequence[str] = ()) -> bytes:
    """A bundle of `refs` (full ref names) without what `have` (commits the receiver has)
    already reaches."""
    scratch = await asyncio.to_thread(_scratch)
    try:
        path = scratch / "out.bundle"
        await git(repo, "bundle", "create", "--quiet", str(path), *refs, *(f"^{h}" for h in have))
        return await asyncio.to_thread(path.read_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def fetch_bundle(repo: Path, data: bytes, refspecs: Sequence[str]) -> None:
    """Fetch `refspecs` ("+src:dst") from the bundle `data` into `repo` (no FETCH_HEAD, no
    tags: the repository gains objects and the named refs, nothing else)."""
    scratch = await asyncio.to_thread(_scratch)
    try:
        path = scratch / "in.bundle"
        await asyncio.to_thread(path.write_bytes, data)
        await git(
            repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(path), *refspecs
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
