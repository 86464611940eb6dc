"""Where tierd keeps its files: one `TIERD_HOME`, or the XDG config/data/state directories.

`TIERD_HOME`, when set, holds everything (config.toml, tierd.db, daemon.json, the token); tests
always set it to a temporary directory so they never touch a user's real files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Homes:
    """The three directories tierd uses; they are the same directory under `TIERD_HOME`."""

    config_dir: Path
    data_dir: Path
    state_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "tierd.db"

    @property
    def checkpoints(self) -> Path:
        return self.data_dir / "checkpoints.db"

    @property
    def discovery_file(self) -> Path:
        return self.state_dir / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "daemon.lock"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    def ensure(self) -> None:
        """Create the directories, private to the user (they hold the token)."""
        for d in {self.config_dir, self.data_dir, self.state_dir}:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def resolve_homes(env: dict[str, str] | None = None) -> Homes:
    """Return the directories for this process: `TIERD_HOME` if set, else XDG."""
    environ = os.environ if env is None else env
    home = environ.get("TIERD_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Homes(root, root, root)
    return Homes(
        config_dir=_xdg("XDG_CONFIG_HOME", ".config") / "tierd",
        data_dir=_xdg("XDG_DATA_HOME", ".local/share") / "tierd",
        state_dir=_xdg("XDG_STATE_HOME", ".local/state") / "tierd",
    )
