"""The discovery file (daemon.json) and the token: how plugins and the CLI find the daemon.

`daemon.json` = {url, token, pid, version, instance_id}, mode 0600, written when the daemon
listens and removed on a clean stop. One daemon per home is enforced with an flock on
`daemon.lock`, which the kernel releases when the process dies, so a daemon.json left by a
killed daemon is recognised as stale and replaced.

A stale daemon.json can still look alive: its pid reused by another program, its port taken
by another server. The token must never go there. So each daemon start draws a random
`instance_id`, writes it here and answers it, unauthenticated, at `/healthz`
(`HEALTH_INSTANCE_FIELD`); a client sends the token only after `identity_problem` found the
two equal. A daemon.json without an instance id (from an older tierd) cannot be verified and
counts as no daemon.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

#: The field of `/healthz`'s answer (and of daemon.json) that holds the daemon's instance id.
HEALTH_INSTANCE_FIELD = "instance_id"


def new_instance_id() -> str:
    """A fresh instance id: drawn at each daemon start, never reused."""
    return secrets.token_hex(16)


@dataclass
class Discovery:
    url: str
    token: str
    pid: int
    version: str
    #: None only for a daemon.json from a tierd older than the identity check.
    instance_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": self.url,
            "token": self.token,
            "pid": self.pid,
            "version": self.version,
        }
        if self.instance_id is not None:
            data[HEALTH_INSTANCE_FIELD] = self.instance_id
        return data


def identity_problem(info: Discovery, health: object) -> str | None:
    """Why the server that answered `/healthz` with `health` (its parsed JSON body) is not the
    daemon daemon.json describes, or None when it is. Until this says None, send no token."""
    if not info.instance_id:
        return (
            "its daemon.json has no instance id (written by an older tierd), so it cannot be "
            "verified: restart the daemon"
        )
    claimed = health.get(HEALTH_INSTANCE_FIELD) if isinstance(health, Mapping) else None
    if not isinstance(claimed, str) or not hmac.compare_digest(
        claimed.encode(), info.instance_id.encode()
    ):
        return f"the server at {info.url} is not the tierd daemon that wrote daemon.json"
    return None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (never world-readable, even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create_token(path: Path) -> str:
    """The daemon's bearer token: created once at first start, then kept."""
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 32:
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def read_discovery(path: Path) -> Discovery | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        instance = data.get(HEALTH_INSTANCE_FIELD)
        pid = int(data["pid"])
        if not 0 < pid < 1 << 31:
            return None  # no process has it: a hand-made or damaged file
        return Discovery(
            str(data["url"]),
            str(data["token"]),
            pid,
            str(data.get("version", "")),
            instance if isinstance(instance, str) and instance else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


def write_discovery(path: Path, info: Discovery) -> None:
    write_private(path, json.dumps(info.as_dict(), indent=2) + "\n")


def remove_discovery(path: Path, pid: int) -> None:
    """Remove daemon.json if it is still ours (never another daemon's)."""
    info = read_discovery(path)
    if info is not None and info.pid == pid:
        path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class AlreadyRunning(RuntimeError):
    def __init__(self, pid: int | None, url: str | None) -> None:
        where = f" at {url}" if url else ""
        who = f" (pid {pid})" if pid else ""
        super().__init__(
            f"a tierd daemon already runs{who}{where} for this home; "
            "stop it first (kill -TERM <pid>) or set TIERD_HOME to use another"
        )
        self.pid = pid
        self.url = url


class InstanceLock:
    """Held for the daemon's whole life; a second daemon on the same home cannot take it."""

    def __init__(self, lock_path: Path, discovery_path: Path) -> None:
        self._lock_path = lock_path
        self._discovery_path = discovery_path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self._lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            info = read_discovery(self._discovery_path)
            raise AlreadyRunning(info.pid if info else None, info.url if info else None) from None
        self._file = f
        stale = read_discovery(self._discovery_path)
        if stale is not None and stale.pid != os.getpid() and not pid_alive(stale.pid):
            # A killed daemon left this behind; we own the home now.
            self._discovery_path.unlink(missing_ok=True)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
