"""The daemon as a real subprocess (`tierd serve`), and the config that points it at a simulator.

Every test that talks to the daemon talks to a real uvicorn on a free loopback port, started
exactly as a user starts it, with models pointed at the simulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support import CHEAP, PREMIUM, ROOT
from support.forkserver import ForkedProcess, fork_server, fresh_daemons
from support.postgres import on_postgres, worker_cluster

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


#: Each home's PostgreSQL database, with TIERD_TEST_STORE=postgres.
_DATABASES: dict[Path, str] = {}


def write_config(
    home: Path, sim_url: str | None, extra: str = "", *, concurrency: str = ""
) -> None:
    """A config whose three roles all point at the simulator (no API key needed); `concurrency`
    holds more lines of its `[concurrency]` table (e.g. "ceiling = 20")."""
    lines = []
    if sim_url:
        for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
            lines += [
                f"[models.{role}]",
                f'model = "{model}"',
                f'api_base = "{sim_url}/v1"',
                'api_key_env = ""',
                "timeout_s = 20.0",
                "max_retries = 3",
                "",
            ]
    lines += ["[concurrency]", "interval_ms = 100", *concurrency.splitlines(), ""]
    if on_postgres() and "[store]" not in extra:  # a database of its own for this home
        if home not in _DATABASES:  # kept when the config is written again (a restart)
            _DATABASES[home] = worker_cluster().new_database()
        lines += ["[store]", f'url = "{_DATABASES[home]}"', ""]
    (home / "config.toml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")


class DaemonProcess:
    """`tierd serve` in a subprocess on a free port, with its own TIERD_HOME."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        *,
        logs: Path | None = None,
        args: tuple[str, ...] = (),
        fresh: bool = False,
    ) -> None:
        self.home = home
        # `start()` forks the daemon from a warm interpreter (support.forkserver) unless
        # `fresh`: then it is `python -m daemon.cli serve`, imports and all.
        self.fresh = fresh or fresh_daemons()
        self.env = {**os.environ, "TIERD_HOME": str(home), **(env or {})}
        # With `logs`, stdout and stderr go to logs/daemon.out and logs/daemon.err (appended
        # across restarts) instead of pipes: a long run's logs must not fill a pipe, and a
        # test may search them afterwards.
        self.logs = logs
        self.args = args
        self.proc: subprocess.Popen[str] | ForkedProcess | None = None
        self.url = ""
        self.token = ""

    @property
    def discovery(self) -> Path:
        return self.home / "daemon.json"

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`python -m daemon.cli serve` in a fresh interpreter (pipes unless `logs` is set)."""
        command = [sys.executable, "-m", "daemon.cli", "serve", "--port", "0", *self.args, *args]
        if self.logs is None:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        with (
            open(self.logs / "daemon.out", "a", encoding="utf-8") as out,
            open(self.logs / "daemon.err", "a", encoding="utf-8") as err,
        ):
            # The child has its own copies of the files.
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=err, text=True
            )

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        # A daemon that runs for a while logs more than a pipe holds (64 KiB): with nobody
        # reading it, its next log line would block it (a stop that never ends). Without
        # `logs`, its output goes to files in a private temporary directory instead.
        if self.logs is None:
            self.logs = Path(tempfile.mkdtemp(prefix="tierd-daemon-logs-"))
        if not self.fresh and type(self).spawn is not DaemonProcess.spawn:
            raise TypeError(f"{type(self).__name__} overrides spawn(): pass fresh=True")
        if self.fresh:
            self.proc = self.spawn()
        else:
            argv = ["serve", "--port", "0", *self.args]
            self.proc = fork_server().spawn(
                argv, self.env, self.logs / "daemon.out", self.logs / "daemon.err"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"daemon exited {self.proc.returncode}: "
                    f"{(self.logs / 'daemon.err').read_text(errors='replace')[-4000:]}"
                )
            try:
                info = json.loads(self.discovery.read_text())
                if info["pid"] == self.proc.pid:
                    self.url, self.token = info["url"], info["token"]
                    return self
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("daemon did not start in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def http(self, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)

    def rpc(self, method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
        if params is not None:
            body["params"] = params
        with self.http() as h:
            return h.post("/rpc", json=body).json()

    def client(self) -> Any:
        from daemon.cli.client import Client

        return Client(self.url, self.token)


@contextmanager
def daemon_on_simulator(
    home: Path, scenario: dict[str, Any], **daemon_options: Any
) -> Iterator[DaemonProcess]:
    """A daemon whose models all point at a simulator running `scenario`, stopped on exit."""
    from support.simulator import running_simulator

    with running_simulator(scenario) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home, **daemon_options).start()
        try:
            yield d
        finally:
            d.stop()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


ENDED = frozenset({"completed", "failed", "canceled"})


def task_of(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    """The task as `task/get` answers it."""
    result: dict[str, Any] = d.rpc("task/get", {"task_id": task_id})["result"]
    return result


def wait_ended(d: DaemonProcess, task_id: str, timeout: float = 400.0) -> dict[str, Any]:
    """The task once it has ended (completed, failed or canceled). Fails the test on timeout."""

    def done() -> dict[str, Any] | None:
        task = task_of(d, task_id)
        return task if task["state"] in ENDED else None

    return wait_for(done, timeout=timeout, interval=0.2)
