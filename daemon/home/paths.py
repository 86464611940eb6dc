"""Where tierd keeps its files: one `TIERD_HOME`, or the XDG config/data/state directories.

`TIERD_HOME`, when set, holds everything (config.toml, tierd.db, daemon.json, the token); tests
always set it to a temporary directory so they never touch a user's real files.

Everything here is private to the user: the token drives the daemon, and the databases hold
every goal, answer and result. The directories are 0700 and the files 0600, whatever made
them (an older tierd, a copy, an editor): `make_private` puts that right at each start.

A home tierd cannot write (a read-only mount, a file where the directory should be, a
directory of another user) is found at start by `Homes.ensure`, which tries a real write:
`os.access` would say yes to root on a directory the kernel still refuses to write.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
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
    def worktrees(self) -> Path:
        """Where code tasks' git worktrees live (never inside a user's repository)."""
        return self.data_dir / "worktrees"

    @property
    def private_dirs(self) -> tuple[Path, ...]:
        """The directories a sandboxed command must not read (the token, the databases)."""
        return tuple(sorted({self.config_dir, self.data_dir, self.state_dir}))

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
        """Create the directories, private to the user (they hold the token), and check that
        each takes a file; raises HomeNotWritable naming the directory and the problem."""
        for d in sorted({self.config_dir, self.data_dir, self.state_dir}):
            ensure_writable_dir(d)

    def files(self) -> list[Path]:
        """Every file tierd itself keeps here, SQLite's companions included."""
        found = [self.config_file, self.discovery_file, self.lock_file, self.token_file]
        for db in (self.database, self.checkpoints):
            found += sqlite_files(db)
        return found

    def make_private(self, extra: Iterable[Path] = ()) -> None:
        """Take group and other permissions off the directories and tierd's files.

        Only tierd's own names are touched (a user's script kept in TIERD_HOME keeps its
        mode), and a file that cannot be changed (not ours) is left as it is.
        """
        for path in [self.config_dir, self.data_dir, self.state_dir, *self.files(), *extra]:
            with contextlib.suppress(OSError):
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    path.chmod(mode & 0o700)


class HomeNotWritable(RuntimeError):
    """A directory of tierd's home cannot be created or written; the message is one line."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"tierd cannot keep its files in {path}: {problem}. Make it writable, or set "
            "TIERD_HOME to a directory you can write"
        )
        self.path = path
        self.problem = problem


def ensure_writable_dir(path: Path) -> None:
    """Create `path` (0700) if it is missing and check that a file can be made in it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise HomeNotWritable(path, "it exists and is not a directory") from None
    except OSError as exc:
        failed = exc.filename if exc.filename and exc.filename != str(path) else None
        what = f"cannot create {failed}" if failed else "cannot create it"
        raise HomeNotWritable(path, f"{what} ({exc.strerror or exc})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".tierd-write-check-", dir=path)
    except OSError as exc:
        raise HomeNotWritable(path, f"cannot write in it ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def sqlite_files(db: Path) -> list[Path]:
    """A SQLite database and the files SQLite keeps beside it."""
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


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
