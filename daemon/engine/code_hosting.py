"""Where a daemon's code tasks work: one record from the composition root to each task's run.

Kept apart from `daemon.engine.code` so that the runner, which loads the engine lazily, can
hold it without importing what code streams use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.engine.code.sites import StreamSites

__all__ = ["CodeHosting"]


@dataclass(frozen=True)
class CodeHosting:
    """The worktrees' directory, what commands must not read, where streams work."""

    #: Where code tasks' worktrees go ($TIERD_HOME/worktrees); None: code tasks fail.
    worktrees: Path | None = None
    #: Directories sandboxed commands must not read (tierd's home: the token, the databases).
    private_dirs: tuple[Path, ...] = ()
    #: Where code streams work (None: worktrees under `worktrees`, on this machine).
    sites: StreamSites | None = None

    async def describe(self) -> dict[str, Any]:
        """The backend, as `daemon/status` shows it (`[executors]`)."""
        return {"backend": "local"} if self.sites is None else await self.sites.describe()
