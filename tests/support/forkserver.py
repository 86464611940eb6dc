"""Daemons forked from one warm interpreter, so a test worker pays tierd's imports once.

A daemon start costs seconds of CPU before it serves anything: FastAPI, MCP, A2A, LangGraph
and litellm are imported first. The end-to-end tests start a few hundred daemons; on a 2-core
CI machine those imports alone were a third of the suite's CPU. So each test worker keeps one
*fork server*: a single-threaded interpreter that has imported all of that and, on request,
forks a child that becomes `tierd serve` (its environment, working directory, arguments and
log files set first, then `daemon.cli.main.main()` as `python -m daemon.cli` would run it).

The child is a real process running the real daemon code: it is signalled, SIGKILLed and
restarted like any other, and the server reports its exit status as `Popen` would. What the
fork does not repeat is the import itself, so a test about what happens at import time (an
environment variable read by litellm when it loads, the start-up of the `tierd` command)
starts a fresh interpreter with `DaemonProcess(..., fresh=True)` or `spawn()`. Setting
`TIERD_TEST_FRESH_DAEMONS=1` makes every daemon a fresh interpreter.

Wire format, one JSON object per line: the test process writes `{"id", "argv", "env", "cwd",
"stdout", "stderr"}` to the server's stdin; the server writes `{"id", "pid"}` (or `{"id",
"error"}`) back, and `{"exit": pid, "code": n}` when a child ends (`n` < 0: killed by signal
-n, as `Popen.returncode`).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from support import ROOT

#: What a daemon imports before it serves; the server imports it once. Not MCP and A2A: the
#: daemon loads those at their first request, and the tests of both exercise that load.
WARM_MODULES = (
    "daemon.cli.main",
    "daemon.cli.local",
    "daemon.api.server",
    "daemon.api.app",
    "daemon.api.composition",
    "daemon.engine.workflow",
)


def fresh_daemons() -> bool:
    """Whether every daemon must start as a fresh interpreter (TIERD_TEST_FRESH_DAEMONS=1)."""
    return os.environ.get("TIERD_TEST_FRESH_DAEMONS", "") not in ("", "0")


class ForkedProcess:
    """A forked daemon, with the part of `subprocess.Popen`'s interface the tests use."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self.stdout = None
        self.stderr = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._server.exit_code(self.pid, timeout=timeout)
            if code is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.returncode = code
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            # It may end between the poll and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The test process's side: starts the server and talks to it (thread-safe)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        # Its own errors (an import that fails) go to a file, for the message if it ends.
        self._errors = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import support.forkserver as f; f.serve()"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._next_id = 0
        self._closed = False
        threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                message = json.loads(line)
                with self._changed:
                    if "exit" in message:
                        self._exits[message["exit"]] = message["code"]
                    else:
                        # A reused pid: the server reports an exit before it forks again,
                        # so an exit recorded for this pid is a former process's.
                        self._exits.pop(message.get("pid", 0), None)
                        self._replies[message["id"]] = message
                    self._changed.notify_all()
        finally:  # also when a line is not ours: nobody may wait for a reply for ever
            with self._changed:
                self._closed = True
                self._changed.notify_all()

    def spawn(
        self, argv: list[str], env: dict[str, str], stdout: Path, stderr: Path
    ) -> ForkedProcess:
        """Fork a child that runs `tierd <argv>` with `env`, its output appended to the files."""
        with self._changed:
            self._next_id += 1
            request_id = self._next_id
            assert self._proc.stdin is not None
            request = {
                "id": request_id,
                "argv": argv,
                "env": env,
                "cwd": str(ROOT),
                "stdout": str(stdout),
                "stderr": str(stderr),
            }
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            if not self._changed.wait_for(
                lambda: request_id in self._replies or self._closed, timeout=60
            ):
                raise RuntimeError("the fork server did not answer within 60 s")
            if self._closed and request_id not in self._replies:
                raise self._ended()
            reply = self._replies.pop(request_id)
        if "error" in reply:
            raise RuntimeError(f"the fork server could not start the daemon: {reply['error']}")
        return ForkedProcess(self, reply["pid"], ["tierd", *argv])

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code once it has ended; None if it still runs after `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self._closed, timeout=timeout)
            if pid not in self._exits and self._closed:
                raise self._ended()
            return self._exits.get(pid)

    def _ended(self) -> RuntimeError:
        """Why nothing more will come: the tail of the server's stderr."""
        self._errors.seek(0)
        return RuntimeError(f"the fork server ended:\n{self._errors.read()[-4000:]}")


_server: ForkServer | None = None
_server_lock = threading.Lock()


def fork_server() -> ForkServer:
    """This test process's fork server, started on first use."""
    global _server
    with _server_lock:
        if _server is None or _server._closed:
            _server = ForkServer()
        return _server


# --- the server ---------------------------------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `python -m daemon.cli <argv>`; never returns."""
    code: Any = 1
    try:
        os.setpgid(0, 0)  # its own process group, like a daemon started from a shell
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(out, fd)
            os.close(out)
        os.closerange(3, 1 << 16)  # the server's pipes and pidfds are not the daemon's
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["argv"]]
        from daemon.cli.main import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        # Exit as the interpreter would (flush, atexit), but never back into the server's loop.
        try:
            import atexit

            threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter does
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))


class _Server:
    """The fork server's state: its children by pidfd, and the half-read request line."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.selector.register(0, selectors.EVENT_READ, None)
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.pending = b""

    def send(self, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def fork(self, request: dict[str, Any]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            self.send({"id": request["id"], "error": str(exc)})
            return
        if pid == 0:
            _child(request)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = pid
        self.selector.register(pidfd, selectors.EVENT_READ, pid)
        self.send({"id": request["id"], "pid": pid})

    def reap(self, pidfd: int) -> None:
        self.selector.unregister(pidfd)
        os.close(pidfd)
        pid = self.children.pop(pidfd)
        _, status = os.waitpid(pid, 0)
        self.send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    def read_requests(self) -> bool:
        """Fork for every complete request line; False once the test process has gone."""
        chunk = os.read(0, 1 << 16)
        if not chunk:
            return False
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            self.fork(json.loads(line))
        return True

    def run(self) -> None:
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.data is not None:
                        self.reap(key.fd)
                    elif not self.read_requests():
                        return
        finally:
            # The test process ended (or this loop failed): no daemon outlives the server.
            for pid in self.children.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def serve() -> None:
    """The server: import once, then fork a daemon per request and report its end."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    if threading.active_count() != 1:
        # A fork copies only the forking thread: a lock another thread held would stay held.
        names = [t.name for t in threading.enumerate()]
        raise SystemExit(f"the fork server must be single-threaded before it forks: {names}")
    _Server().run()
