"""Running the daemon like a service: `tierd serve --detach` (in the background, logging to a
file), `tierd logs [-f]` (that file) and `tierd stop`.

`stop` sends SIGTERM to the daemon this home's daemon.json names, once `/healthz` has shown
that the process at its URL is that daemon (`Client.discover`): the daemon's own graceful
stop follows (in-flight requests and store writes finish, tasks resume at the next start).
The log file is `daemon.log` in the state directory (`$TIERD_HOME`, else
`~/.local/state/tierd`), private like every file there; a log over `LOG_ROTATE_BYTES` is
moved to `daemon.log.1` when the next detached daemon starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from daemon.cli.output import EXIT_ERROR, EXIT_NO_DAEMON, EXIT_OK, err, print_json

if TYPE_CHECKING:
    from daemon.home.paths import Homes

__all__ = ["LOG_NAME", "cmd_logs", "cmd_stop", "detach", "log_file"]

LOG_NAME = "daemon.log"
LOG_ROTATE_BYTES = 10 * 1024 * 1024
#: Seconds a detached daemon has to announce itself in daemon.json.
START_TIMEOUT_S = 90.0
#: Seconds between two looks at the log file while following it.
FOLLOW_POLL_S = 0.25


def log_file() -> Path:
    from daemon.home.paths import resolve_homes

    return resolve_homes().state_dir / LOG_NAME


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """`tierd serve` with the same options, minus --detach."""
    argv = [sys.executable, "-m", "daemon.cli", "serve"]
    if args.host:
        argv += ["--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.allow_remote:
        argv.append("--allow-remote")
    return [*argv, "--log-level", args.log_level, "--log-format", args.log_format]


def detach(args: argparse.Namespace) -> int:
    """`tierd serve --detach`: start the daemon in a session of its own, its output appended
    to the log file; return once it answers (0), or with its exit code and the lines it
    logged when it could not start."""
    from daemon.home.discovery import read_discovery
    from daemon.home.paths import HomeNotWritable, resolve_homes

    homes = resolve_homes()
    path = homes.state_dir / LOG_NAME
    try:
        log = _open_log(homes, path)
    except HomeNotWritable as exc:
        err(str(exc))
        return 2
    except OSError as exc:
        err(f"cannot write the log {path}: {exc.strerror or exc}")
        return 2
    try:
        with log:
            start = log.tell()
            # The daemon gets the user's own umask: it keeps it for the notify hook.
            child = subprocess.Popen(
                _serve_argv(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C in this terminal must not reach it
                close_fds=True,
            )
    except OSError as exc:
        err(f"cannot start the daemon: {exc.strerror or exc}")
        return EXIT_ERROR
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            sys.stderr.write(_read_from(path, start))
            err(f"the daemon did not start (exit {code}); its log: {path}")
            return code or EXIT_ERROR
        info = read_discovery(homes.discovery_file)
        if info is not None and info.pid == child.pid:
            print(
                f"tierd daemon started in the background (pid {child.pid}) at {info.url}; "
                f"log: {path}; stop it with `tierd stop`",
                file=sys.stderr,
            )
            return EXIT_OK
        time.sleep(0.1)
    err(f"the daemon (pid {child.pid}) did not answer within {START_TIMEOUT_S:g}s; see {path}")
    return EXIT_ERROR


def _open_log(homes: Homes, path: Path) -> BinaryIO:
    """The log, opened for appending, as private as the rest of the home; one grown past
    LOG_ROTATE_BYTES is moved to daemon.log.1 first."""
    old_umask = os.umask(0o077)
    try:
        homes.ensure()
        if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(LOG_NAME + ".1"))
        return open(path, "ab")  # the caller closes it
    finally:
        os.umask(old_umask)


def _read_from(path: Path, offset: int) -> str:
    return _bytes_from(path, offset).decode("utf-8", "replace")


def _bytes_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _gone(pid: int, discovery: Path) -> bool:
    """The daemon has stopped: its process is gone, and so is its daemon.json."""
    from daemon.home.discovery import pid_alive, read_discovery

    info = read_discovery(discovery)
    return not pid_alive(pid) and (info is None or info.pid != pid)


def cmd_stop(args: argparse.Namespace) -> int:
    """`tierd stop`: a graceful stop of this home's daemon; wait until it is gone."""
    from daemon.cli.client import Client, DaemonNotRunning
    from daemon.home.discovery import read_discovery
    from daemon.home.paths import resolve_homes

    homes = resolve_homes()
    try:
        # The identity check: the token and the signal go only to the daemon daemon.json
        # names, never to whatever now holds its pid or port.
        Client.discover(homes, timeout=10.0).close()
    except DaemonNotRunning as exc:
        err(str(exc).split(". Start one")[0])
        return EXIT_NO_DAEMON
    info = read_discovery(homes.discovery_file)
    if info is None:  # it stopped between the two reads
        err("no tierd daemon is running for this home")
        return EXIT_NO_DAEMON
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # gone already: the wait below says so
    except PermissionError:
        err(f"the daemon (pid {info.pid}) belongs to another user; it was not stopped")
        return EXIT_ERROR
    deadline = time.monotonic() + args.timeout
    while not _gone(info.pid, homes.discovery_file):
        if time.monotonic() > deadline:
            err(f"the daemon (pid {info.pid}) is still stopping after {args.timeout:g}s")
            return EXIT_ERROR
        time.sleep(0.1)
    if args.json:
        print_json({"stopped": True, "pid": info.pid, "url": info.url})
    else:
        print(f"stopped the tierd daemon (pid {info.pid}) at {info.url}")
    return EXIT_OK


def _tail(path: Path, lines: int) -> tuple[str, int]:
    """The last `lines` lines of the file, and where it ends."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        block, data = 64 * 1024, b""
        pos = end
        while pos > 0 and data.count(b"\n") <= lines:
            pos = max(0, pos - block)
            f.seek(pos)
            data = f.read(end - pos)
        text = data.decode("utf-8", "replace")
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept), end


def cmd_logs(args: argparse.Namespace) -> int:
    """`tierd logs [-f] [-n N]`: the detached daemon's log, and with -f what it adds."""
    path = log_file()
    if not path.is_file():
        err(
            f"no log at {path}: a daemon writes one when started with `tierd serve --detach` "
            "(in the foreground it logs to its terminal)"
        )
        return EXIT_ERROR
    text, offset = _tail(path, args.lines)
    _write(text)
    while args.follow:
        time.sleep(FOLLOW_POLL_S)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue  # being rotated: the new file comes
        if size < offset:  # rotated or truncated: start again from its beginning
            offset = 0
        if size > offset:
            added = _bytes_from(path, offset)
            offset += len(added)
            _write(added.decode("utf-8", "replace"))
    return EXIT_OK


def _write(text: str) -> None:
    from daemon.cli.terminal import clean

    # The log holds daemon text (reasons, paths): neutralised, like every view of it.
    sys.stdout.write(clean(text))
    sys.stdout.flush()
