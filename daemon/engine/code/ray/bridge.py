"""The daemon's side of the Ray driver: starts it as a child process and asks it over a pipe.

One `RayBridge` per daemon. The driver (`bridge_main`) starts with the first request (Ray takes
seconds to connect; a daemon with no code task never pays it) and again after it ended: a driver
that dies takes its actors with it, so every request in flight then fails with `StreamLost`, and
each stream opens again from its last saved step. The driver's environment is the daemon's
without anything that looks like a credential (the model keys stay in the daemon); what it
prints goes to its own log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from daemon.engine.code.ray.frames import encode, read_frame
from daemon.engine.code.ray.settings import RaySettings
from daemon.engine.errors import StreamFailed
from daemon.engine.notify import clean_env

__all__ = ["RayBridge", "RayUnavailable", "StreamLost"]

log = logging.getLogger("tierd.ray")

#: How long the driver may take to connect to the cluster and answer its first request.
START_TIMEOUT_S = 120.0
#: How long a stopping driver may take to end before it is killed.
STOP_TIMEOUT_S = 10.0
#: Lines of the driver's log quoted when it cannot start.
LOG_TAIL_LINES = 12


class StreamLost(Exception):
    """The stream's worker, its node or the driver is gone: open the stream again."""


class RayUnavailable(StreamFailed):
    """The Ray cluster cannot be used (not installed, not reachable): the stream fails."""


class RayBridge:
    """Requests to the Ray driver; the driver's process."""

    def __init__(
        self,
        settings: RaySettings,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        key_names: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        #: Without the model keys: those the config names (`api_key_env`), and any variable
        #: that looks like a credential.
        self._env = clean_env(os.environ if env is None else env, key_names)
        self._env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._starting = asyncio.Lock()
        self._write = asyncio.Lock()
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def request(self, op: str, *args: Any) -> Any:
        """The driver's answer to `op`; raises StreamLost or RayUnavailable (or StreamFailed
        with the error a call raised on its worker)."""
        ok, value = await self._exchange(await self._ensure(), op, args)
        if ok:
            return value
        kind, message = value
        if kind == "lost":
            raise StreamLost(message)
        raise StreamFailed(f"on the Ray cluster: {message}")

    async def _exchange(
        self, proc: asyncio.subprocess.Process, op: str, args: tuple[Any, ...]
    ) -> tuple[bool, Any]:
        """Send one request to `proc` and wait for its reply: (ok, value)."""
        req_id = next(self._ids)
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            # An open carries the repository's bundle: pickled off the event loop, first.
            frame = await asyncio.to_thread(encode, (req_id, op, args))
            async with self._write:
                assert proc.stdin is not None
                proc.stdin.write(frame)
                await proc.stdin.drain()
            return await future
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise StreamLost(f"the Ray driver ended ({exc})") from exc
        finally:
            self._pending.pop(req_id, None)

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self._stopped:
            raise StreamLost("the daemon is stopping")
        async with self._starting:
            if self._proc is not None and self._proc.returncode is None:
                return self._proc
            return await self._start()

    async def _start(self) -> asyncio.subprocess.Process:
        await asyncio.to_thread(self.log_path.parent.mkdir, parents=True, exist_ok=True)
        logfile = await asyncio.to_thread(open, self.log_path, "ab")
        with logfile:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon.engine.code.ray.bridge_main",
                self.settings.driver_argument(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=logfile,
                env=self._env,
                limit=1 << 30,
            )
        self._proc = proc
        self._reader = asyncio.create_task(self._read(proc))
        where = self.settings.address or "a local Ray of its own"
        log.info("started the Ray driver (pid %d) for %s", proc.pid, where)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._exchange(proc, "ping", ())
        except (StreamLost, TimeoutError) as exc:
            await self._kill(proc)
            raise RayUnavailable(
                f"cannot use the Ray cluster ({where}; [executors] ray_address): "
                f"{exc or 'no answer'}; the driver's log ({self.log_path}) ends with:\n"
                + await self._log_tail()
            ) from exc
        return proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        why = "its pipe closed"
        try:
            while True:
                req_id, ok, value = await read_frame(proc.stdout)
                future = self._pending.get(req_id)
                if future is not None and not future.done():
                    future.set_result((ok, value))
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await proc.wait()
            why = f"it exited with code {code}"
        except Exception as exc:  # a frame that does not unpickle: the driver is broken
            why = f"it sent a bad reply ({exc})"
            await self._kill(proc)
        log.warning("the Ray driver ended: %s (its log: %s)", why, self.log_path)
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(StreamLost(f"the Ray driver ended: {why}"))

    async def _log_tail(self) -> str:
        def tail() -> str:
            try:
                lines = self.log_path.read_text(errors="replace").splitlines()
            except OSError:
                return "(no log)"
            return "\n".join(lines[-LOG_TAIL_LINES:])

        return await asyncio.to_thread(tail)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        """End the driver (its actors, and the worktrees they hold, end with it)."""
        self._stopped = True
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            await self._kill(proc)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
