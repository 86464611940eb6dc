"""A code task's repository at submit: `repo`, `base` and `include_uncommitted` checked, and
the facts the task is stored with.

A task with `repo` is a code task. Its repository is checked before anything is stored
(`daemon.engine.code.repository.validate_repo`): each refusal is an InvalidParams naming the
field at fault, `repo` or `base`. The facts kept with the task (`TaskRow.code_json`) are the
work tree's top level, the base as given, the commit it resolved to and, with
`include_uncommitted`, the commit object that snapshots the user's uncommitted changes (written
through a private index: the user's index and working tree stay as they were).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from daemon.engine.code.git import GitError
from daemon.engine.code.repository import RepoError, validate_repo
from daemon.home.paths import Homes
from daemon.service.errors import InvalidParams, ServiceError
from daemon.service.params import SubmitParams
from daemon.store.store import TaskRow

__all__ = ["DEFAULT_BASE", "code_facts", "same_code"]

DEFAULT_BASE = "HEAD"


def _refuse(field: str, message: str) -> InvalidParams:
    return InvalidParams(f"{field}: {message}", {"field": field})


def _check_text(params: SubmitParams) -> None:
    """Refuse what cannot be a path or a ref before any of it reaches the file system or git
    (a NUL byte would fail deep inside them); and base or include_uncommitted without repo."""
    if params.repo is None:
        for field, given in (
            ("base", params.base is not None),
            ("include_uncommitted", params.include_uncommitted),
        ):
            if given:
                raise _refuse(field, "applies to a code task only: give repo as well")
        return
    for field, value in (("repo", params.repo), ("base", params.base or "")):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise _refuse(field, "must not contain control characters")


async def _inside(path: Path, homes: Homes) -> Path | None:
    """The directory of tierd's own (its home: config, data, state) that holds `path`, if any."""

    def find() -> Path | None:
        for home in sorted({homes.config_dir, homes.data_dir, homes.state_dir}):
            resolved = home.resolve()
            if path == resolved or resolved in path.parents:
                return resolved
        return None

    return await asyncio.to_thread(find)


async def _checked(params: SubmitParams, repo: str, base: str, homes: Homes) -> dict[str, Any]:
    checked = await validate_repo(repo, base)
    where = await _inside(checked.path, homes)
    if where is not None:
        raise _refuse("repo", f"{checked.path} is inside tierd's own home ({where})")
    snapshot = None
    if params.include_uncommitted:
        # A second look, at the top level found above: it checks that base is HEAD and makes
        # the snapshot, whose parent is the base's commit kept above.
        taken = await validate_repo(checked.path, base, include_uncommitted=True)
        snapshot = taken.base_commit if taken.uncommitted else None
    return {
        "repo": str(checked.path),
        "repo_given": repo,
        "base": base,
        "base_commit": checked.base_commit,
        "include_uncommitted": params.include_uncommitted,
        "snapshot_commit": snapshot,
    }


async def code_facts(params: SubmitParams, homes: Homes) -> dict[str, Any] | None:
    """What a code task is stored with (`TaskRow.code_json`), None for a text task; an
    InvalidParams naming the field when its repository or base cannot be used."""
    _check_text(params)
    if params.repo is None:
        return None
    try:
        return await _checked(params, params.repo, params.base or DEFAULT_BASE, homes)
    except RepoError as exc:
        raise _refuse(exc.field, exc.message) from exc
    except GitError as exc:
        raise _refuse("repo", f"git could not read the repository: {exc}") from exc
    except FileNotFoundError as exc:
        # Path checks do not raise this (a missing path is a RepoError): git itself is missing.
        raise ServiceError(
            "git is not installed on the daemon's machine (e.g. apt-get install git)",
            {"package": "git"},
        ) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        # A path the file system refuses (too long a name, a symlink loop, no permission).
        raise _refuse("repo", f"cannot be read: {exc}") from exc


def same_code(row: TaskRow, params: SubmitParams) -> bool:
    """Whether a submit asks for the code task `row` is (a retry), or for none when `row` is
    a text task: the repository and base as given, and include_uncommitted."""
    if row.code_json is None:
        return params.repo is None and params.base is None and not params.include_uncommitted
    stored = json.loads(row.code_json)
    return (
        stored.get("repo_given") == params.repo
        and stored.get("base") == (params.base or DEFAULT_BASE)
        and bool(stored.get("include_uncommitted")) == params.include_uncommitted
    )
