"""A code task's fixed facts, as `task/submit` stored them in the task's `code_json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CodeTask"]


@dataclass(frozen=True)
class CodeTask:
    """The repository a code task works on and the commit it starts from."""

    repo: Path
    base: str
    base_commit: str
    #: The branches holding the task's results for the human (kept when the task ends).
    branches: tuple[str, ...] = ()
    #: The merged result's branch, once merged.
    result_branch: str | None = None
    #: How the human had the result applied ("branch", "merge", "patch"), once approved.
    applied: str | None = None

    @classmethod
    def of(cls, code_json: str | None) -> CodeTask | None:
        """From a task row's `code_json`; None for a task without a repository."""
        if not code_json:
            return None
        data: dict[str, Any] = json.loads(code_json)
        if not data.get("repo"):
            return None
        return cls(
            repo=Path(data["repo"]),
            base=str(data.get("base") or "HEAD"),
            # With include_uncommitted, the snapshot of the user's uncommitted work (a commit
            # on top of HEAD) is where the task starts; without, or with nothing uncommitted,
            # the commit the base resolved to.
            base_commit=str(data.get("snapshot_commit") or data["base_commit"]),
            branches=tuple(data.get("branches") or ()),
            result_branch=(data.get("result") or {}).get("branch"),
            applied=(data.get("applied") or {}).get("how"),
        )
