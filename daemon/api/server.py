"""`tierd serve`: bind, announce in daemon.json, serve until SIGTERM/SIGINT, clean up.

The socket is bound before anything is announced, so daemon.json always holds the real port
(port 0 picks a free one). On SIGTERM or SIGINT the server stops accepting, lets in-flight
requests and store writes finish, removes daemon.json and exits 0.

It logs to stderr (a file, when `tierd serve --detach` started it): tierd's own lines at info
level, task activity among them (`_log_activity`: submitted, questions and answers, verdicts,
decisions; the engine logs each state change and failure), as text or, with `--log-format
json`, one JSON object a line. Never a goal, an answer, a comment or a key: only ids, states,
verdicts and the reasons the engine gives.

Every file the daemon creates is private: `serve` sets the process umask to 077 first (SQLite
and langgraph create their databases, WAL and shared-memory files with the umask's mode, and
there is no other place to say so), and makes what an earlier run left private as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from daemon import __version__
from daemon.api.app import create_app
from daemon.api.composition import Daemon, store_url
from daemon.api.connections import ConnectionLimits, protocol_for
from daemon.api.guard import is_loopback_name
from daemon.config.layers import Config, ConfigError, load_config
from daemon.engine import notify
from daemon.engine.errors import CheckpointsDamaged
from daemon.home.discovery import (
    AlreadyRunning,
    Discovery,
    InstanceLock,
    load_or_create_token,
    new_instance_id,
    remove_discovery,
    write_discovery,
)
from daemon.home.paths import HomeNotWritable, Homes, resolve_homes, sqlite_files
from daemon.service.task_config import task_settings
from daemon.store.errors import StoreInUse, StoreUnavailable
from daemon.store.store import NewEvent
from roles.models.errors import ModelConfigError

log = logging.getLogger("tierd")

#: The daemon's umask: files 0600, directories 0700.
PRIVATE_UMASK = 0o077


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the captured signal after a graceful stop.

    uvicorn re-raises SIGTERM/SIGINT once it has shut down, which would end the process with
    the signal's status; a clean stop of the daemon is exit status 0.
    """

    def __init__(
        self, config: uvicorn.Config, daemon: Daemon, on_started: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._daemon = daemon
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # Announce only now: the socket accepts and the app is ready.
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Ending the event streams first lets the server's graceful stop complete quickly.
        self._daemon.begin_shutdown()
        super().handle_exit(sig, frame)


@dataclass
class ServeOptions:
    host: str | None = None
    port: int | None = None
    allow_remote: bool = False
    log_level: str = "warning"
    #: "text" (a line a record) or "json" (one JSON object a line).
    log_format: str = "text"


def _is_loopback_host(host: str) -> bool:
    if is_loopback_name(host):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store_files(homes: Homes, config: Config) -> list[Path]:
    """The files of the SQLite database store.url names (it may be outside the data dir)."""
    try:
        url = make_url(store_url(homes, config))
    except ArgumentError:
        return []  # the store reports a bad URL itself, more clearly
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    return sqlite_files(Path(url.database))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio only turns Nagle off (TCP_NODELAY) for sockets that say
    # they are TCP; with Nagle on, small answers wait ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _refuse(message: str, status: int) -> int:
    if _json_logs():
        log.error("%s", message)
    else:
        print(f"tierd: {message}", file=sys.stderr)
    return status


def serve(opts: ServeOptions, homes: Homes | None = None) -> int:
    """Run the daemon in the foreground; returns the process exit status."""
    homes = homes or resolve_homes()
    _configure_logging(opts.log_level, opts.log_format)
    # The notification hook is the user's program: it gets the user's own umask back.
    notify.set_hook_umask(os.umask(PRIVATE_UMASK))
    try:
        homes.ensure()
    except HomeNotWritable as exc:
        return _refuse(str(exc), 2)
    try:
        config = load_config(homes.config_file)
    except ConfigError as exc:
        return _refuse(f"configuration error: {exc}", 2)
    homes.make_private(_store_files(homes, config))
    host = opts.host or config.get("server.host")
    port = config.get("server.port") if opts.port is None else opts.port
    if not _is_loopback_host(host) and not opts.allow_remote:
        return _refuse(
            f"refusing to listen on non-loopback host {host!r}: the API would be "
            "reachable from the network. Use --allow-remote if you really mean it.",
            2,
        )
    lock = InstanceLock(homes.lock_file, homes.discovery_file)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        return _refuse(str(exc), 3)
    try:
        try:
            sock = _bind(host, port)
        except OSError as exc:
            return _refuse(
                f"cannot listen on {host}:{port}: {exc.strerror}. Choose another "
                "port with --port or server.port.",
                2,
            )
        try:
            return _serve_on(sock, host, opts, homes, config)
        finally:
            sock.close()
    finally:
        lock.release()


def _serve_on(
    sock: socket.socket, host: str, opts: ServeOptions, homes: Homes, config: Config
) -> int:
    """Serve on the bound socket until a signal stops the server; the exit status."""
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{sock.getsockname()[1]}"
    token = load_or_create_token(homes.token_file)
    try:
        limits = ConnectionLimits.from_config(config)
        daemon = Daemon(homes, config)
        daemon.store.add_listener(_log_activity)
        # Echoed by /healthz so a client can tell this daemon from whatever else now owns
        # the port of a stale daemon.json, before it sends the token.
        instance_id = new_instance_id()
        app = create_app(daemon, token, allow_remote=opts.allow_remote, instance_id=instance_id)
    except ValueError as exc:  # e.g. concurrency.soft above concurrency.hard
        return _refuse(f"configuration error: {exc}", 2)
    uv_config = uvicorn.Config(
        app,
        # uvicorn's httptools protocol (h11's without httptools), with deadlines on
        # half-sent requests and a bound on the connections open at once (`connections`).
        http=protocol_for(limits),
        # No proxy stands in front of a local daemon: a client's X-Forwarded-* headers are
        # not taken as its address or scheme (uvicorn trusts them from 127.0.0.1 otherwise).
        proxy_headers=False,
        log_level=opts.log_level,
        # JSON lines: uvicorn's own records go through tierd's handler (`_configure_logging`).
        log_config=None if opts.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
        # Clients (editor plugins) reuse connections; uvicorn's 5 s default closes them
        # under a client that is about to send, which it sees as a dropped request.
        timeout_keep_alive=65,
    )
    info = Discovery(
        url=url, token=token, pid=os.getpid(), version=__version__, instance_id=instance_id
    )

    def announce() -> None:
        write_discovery(homes.discovery_file, info)
        line = (
            f"tierd {__version__} listening on {url} (pid {os.getpid()}); "
            f"discovery file {homes.discovery_file}"
        )
        if _json_logs():
            log.info("%s", line)
        else:
            print(line, file=sys.stderr, flush=True)

    server = _Server(uv_config, daemon, announce)
    try:
        asyncio.run(_run(daemon, server, sock))
    except SystemExit as exc:
        return int(exc.code or 1)
    finally:
        remove_discovery(homes.discovery_file, os.getpid())
    return 0 if server.started else 1


async def _refuse_start(daemon: Daemon, message: str, status: int) -> None:
    """Say why the daemon does not start, release what it holds and exit with `status`.

    Exited at once (os._exit) once the store is closed: the engine's import, started in a
    worker thread while the daemon opened, is abandoned (`Runner.stop`), and a normal exit
    would wait for that thread all the same (asyncio's default executor is joined at the end
    of `asyncio.run`), seconds to minutes on a loaded machine, with the refusal already said.
    """
    print(message, file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(daemon.stop(), timeout=30)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)


def _start_failure_status(exc: BaseException) -> int:
    """The CLI's exit codes: 3 another daemon has it, 2 the setup is wrong, 1 anything else."""
    if isinstance(exc, StoreInUse):
        return 3
    if isinstance(exc, StoreUnavailable):
        return 2
    return 1


async def _run(daemon: Daemon, server: _Server, sock: socket.socket) -> None:
    # Start the parts here rather than in the ASGI lifespan, so a start-up failure (say, a
    # database from a newer tierd) is one clear line, not a server traceback.
    try:
        await daemon.start()
    except CheckpointsDamaged as exc:
        await _refuse_start(daemon, f"tierd: {exc}", 2)
    except Exception as exc:
        await _refuse_start(daemon, f"tierd: cannot start: {exc}", _start_failure_status(exc))
    checking = asyncio.create_task(_check_models(daemon))
    try:
        await server.serve(sockets=[sock])
    finally:
        checking.cancel()


async def _check_models(daemon: Daemon) -> None:
    """Say at start, in the log, when a role's model cannot be used: submits are refused
    with the same words (-32003) until the configuration is fixed. Not before serving: the
    check needs litellm, and waiting for it would hold up the start by seconds."""
    try:
        await daemon.runner.check_models(task_settings(daemon.config), wait=True)
    except ModelConfigError as exc:
        log.error("%s; tasks are refused until it is fixed (tierd config set ...)", exc)
    except Exception:  # the check must never take the daemon down
        log.exception("could not check the configured models")


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, and the task id
    and event kind of an activity line; a traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("task_id", "event"):
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def _json_logs() -> bool:
    return any(isinstance(h.formatter, JsonLines) for h in logging.getLogger("tierd").handlers)


def _configure_logging(level: str, fmt: str = "text") -> None:
    """tierd's own lines (task activity, failed model calls) go to stderr at info level
    unless a quieter level is asked for; uvicorn keeps `level` for its own. With `fmt`
    "json" every line, uvicorn's too, is a JSON object."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
        for name in ("uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [handler] if name == "uvicorn" else []
            logger.setLevel(level.upper() if level != "trace" else logging.DEBUG)
            logger.propagate = name != "uvicorn"
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    tierd = logging.getLogger("tierd")
    tierd.handlers[:] = [handler]
    quiet = {"error": logging.ERROR, "critical": logging.CRITICAL}
    tierd.setLevel(logging.DEBUG if level in ("debug", "trace") else quiet.get(level, logging.INFO))
    tierd.propagate = False


activity = logging.getLogger("tierd.activity")


def _activity_line(event: NewEvent) -> str | None:
    """What an event says in the log, or None for events the log leaves out (model calls,
    tool steps: too many; state changes: the engine logs them itself, with their reason)."""
    data, kind = event.data, event.type
    if kind == "task.state" and data.get("previous") is None:
        return "submitted"
    if kind == "question":
        return f"stream {data.get('stream_id')} asked question {data.get('question_id')}"
    if kind == "task.answered":
        return f"answered {', '.join(map(str, data.get('questions') or []))}; works again"
    if kind == "review.verdict":
        return f"stream {data.get('stream_id')}: verdict {data.get('verdict')}" + (
            f" (round {data['round']})" if data.get("round") is not None else ""
        )
    if kind == "task.decision":
        return f"result {data.get('decision')}d (revision {data.get('revision')})"
    if kind == "attention" and data.get("kind") in ("questions", "approval"):
        return f"waits for the human ({data.get('kind')})"
    return None


def _log_activity(event: NewEvent) -> None:
    """A store listener: one info line per event of a task's activity."""
    if event.task_id is None or not activity.isEnabledFor(logging.INFO):
        return
    line = _activity_line(event)
    if line is not None:
        extra = {"task_id": event.task_id, "event": event.type}
        activity.info("task %s: %s", event.task_id, line, extra=extra)
