"""What every offline demo shares: its daemon, the signals, and a run that always cleans up.

A demo starts the bundled model simulator in a thread and a real daemon (`tierd serve` in a
subprocess with its own temporary TIERD_HOME), talks to it with the CLI's client, and must leave
nothing behind however it ends: completed, failed, refused by the daemon, Ctrl-C or SIGTERM, or
Ctrl-C again during the clean-up. `run_guarded` gives each demo that ending once; the demos
(`demo.py`, `code_demo.py`) and the soak keep only what they do in between.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from daemon.cli.client import ApiError, Client, DaemonNotRunning
from daemon.home.discovery import read_discovery

if TYPE_CHECKING:
    from daemon.tools.simulator import SimulatorThread

__all__ = [
    "DaemonHandle",
    "DemoError",
    "DemoRun",
    "daemon_env",
    "log_tail",
    "run_guarded",
    "start_daemon",
]


class DemoError(RuntimeError):
    """The demo could not set itself up (the message says what went wrong)."""


def daemon_env(home: Path) -> dict[str, str]:
    """The daemon's environment: its own home, offline price table, no provider keys."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["TIERD_HOME"] = str(home)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # The simulator is on loopback: never route it through a proxy from the environment.
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(filter(None, [env.get(var, ""), "127.0.0.1", "localhost"]))
    # Find this very package even when it is not installed (a source checkout).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    return env


@dataclass
class DaemonHandle:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_daemon(home: Path, timeout: float = 60.0) -> DaemonHandle:
    """`tierd serve --port 0` with TIERD_HOME=home; returns once daemon.json names it."""
    log = home / "daemon.log"
    handle: DaemonHandle | None = None
    try:
        with _interrupts_deferred(), log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "serve", "--port", "0"],
                cwd=home,
                env=daemon_env(home),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            handle = DaemonHandle(proc, "", "", log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(
                    f"the daemon exited with status {proc.returncode}:\n" + log_tail(log)
                )
            info = read_discovery(home / "daemon.json")
            if info is not None and info.pid == proc.pid:
                handle.url, handle.token = info.url, info.token
                return handle
            time.sleep(0.05)
        raise DemoError(f"the daemon did not start within {timeout:.0f}s:\n" + log_tail(log))
    except BaseException:
        if handle is not None:
            handle.stop()
        raise


@contextlib.contextmanager
def _handled(handler: Any, *sigs: signal.Signals) -> Iterator[None]:
    """`handler` for `sigs` while the block runs, the previous handlers again after it.
    Outside the main thread signals cannot be handled: they are left alone."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig in sigs}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt for one that
    came. `Popen` forks before it returns: interrupted in between, it raises without killing
    the child, and the daemon ran on with no handle to stop it. The handlers are Python's, so
    the child (which execs) starts with the default ones, not with the signals ignored."""
    came: list[int] = []

    def note(sig: int, _frame: FrameType | None) -> None:
        came.append(sig)

    with _handled(note, signal.SIGINT, signal.SIGTERM):
        yield
    if came:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so the clean-up below runs for both."""

    def raise_interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with _handled(raise_interrupt, signal.SIGTERM):
        yield


@contextlib.contextmanager
def _ignore_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while cleaning up, so the clean-up itself completes."""
    with _handled(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM):
        yield


@dataclass
class DemoRun:
    """What one demo has started; `run_guarded` stops all of it on the way out."""

    work: Path
    keep: bool = False
    sim: SimulatorThread | None = None
    daemon: DaemonHandle | None = None
    client: Client | None = None
    notes: list[str] = field(default_factory=list)

    def start(
        self, scenario: Any, home: Path, config: Callable[[str], str], **sim_options: Any
    ) -> Client:
        """The simulator on `scenario`, a daemon in `home` whose config.toml is
        `config(simulator_api_base)`, and a client of it."""
        from daemon.tools.simulator import SimulatorThread

        self.sim = SimulatorThread(scenario, **sim_options).start()
        (home / "config.toml").write_text(config(self.sim.api_base), encoding="utf-8")
        self.daemon = start_daemon(home)
        self.client = Client(self.daemon.url, self.daemon.token)
        return self.client

    def describe(self) -> str:
        """Where the daemon runs, for a dim line under the demo's intro."""
        if self.daemon is None:
            return "no daemon"
        return f"daemon at {self.daemon.url} (pid {self.daemon.proc.pid})"

    def close(self) -> None:
        """Stop the client, the daemon and the simulator, then remove (or keep) `work`."""
        if self.client is not None:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop()
        if self.sim is not None:
            self.sim.stop()
        if self.keep:
            print(f"tierd demo: kept {self.work}", *self.notes, file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def run_guarded(work: Path, body: Callable[[DemoRun], int], *, keep: bool = False) -> int:
    """Run `body` with a fresh `DemoRun` in `work`; the exit status: body's own, 1 when the
    demo could not set itself up or the daemon refused or died, 130 on Ctrl-C or SIGTERM.
    Whatever happens, everything the run started is stopped and `work` removed unless `keep`."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    run = DemoRun(work.resolve(), keep=keep)
    with _sigterm_as_interrupt():
        try:
            return body(run)
        except KeyboardInterrupt:
            print(
                "\ntierd demo: interrupted; stopping the daemon and the simulator", file=sys.stderr
            )
            return 130
        except DemoError as exc:
            print(f"tierd demo: {exc}", file=sys.stderr)
            return 1
        except (ApiError, DaemonNotRunning) as exc:  # the daemon refused or died
            tail = log_tail(run.daemon.log) if run.daemon is not None else ""
            print(f"tierd demo: {exc}" + (f"\n{tail}" if tail else ""), file=sys.stderr)
            return 1
        finally:
            # Ctrl-C again during the clean-up must not leave a daemon or a directory behind.
            with _ignore_interrupts():
                run.close()
