"""Run a subprocess in its own process group, with a time limit and bounded output.

Everything code tasks run (git, the sandbox) goes through `run_process`: the child starts a new
session, so on timeout, or when the awaiting task is cancelled, the whole process group is
killed and nothing keeps running behind the daemon's back. Output beyond the bound is dropped
from the middle (the head says what started, the tail usually says how it ended), and the
caller learns how many bytes were left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BoundedBuffer", "ProcessResult", "run_process"]

#: How long the pipes may stay open after the child exited (a background grandchild holding
#: them must not hold the caller until the time limit).
_DRAIN_S = 0.5
_CHUNK = 65536


class BoundedBuffer:
    """Keeps the first and the last `limit // 2` bytes written to it (all of it when None);
    with `head_only`, the first `limit` bytes."""

    def __init__(self, limit: int | None, *, head_only: bool = False) -> None:
        self._limit = limit
        self._head_only = head_only
        self._head = bytearray()
        self._tail = bytearray()
        self.omitted = 0

    def write(self, data: bytes) -> None:
        if self._limit is None:
            self._head += data
            return
        half = self._limit if self._head_only else self._limit // 2
        room = half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if self._head_only:
            self.omitted += len(data)
            return
        self._tail += data
        keep = self._limit - half
        if len(self._tail) > keep:
            drop = len(self._tail) - keep
            del self._tail[:drop]
            self.omitted += drop

    def value(self, note: str = "\n[... {n} bytes of output omitted ...]\n") -> bytes:
        """The kept bytes; a note marks where bytes were left out (not after a head only)."""
        if not self.omitted or self._head_only:
            return bytes(self._head + self._tail)
        return bytes(self._head) + note.format(n=self.omitted).encode() + bytes(self._tail)


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended. `exit_code` is negative when a signal ended it (-9: killed)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool
    #: Bytes of output left out by the bound (stdout and stderr together).
    omitted_bytes: int


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child leads its own session, so its pid is the group id of everything it started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class _Pipe:
    """An output pipe of our own: the child gets the write end, we read the other.

    asyncio's own pipes make `Process.wait()` wait until they close, and a background
    grandchild can hold them open for as long as it likes; with our own, `wait()` returns when
    the child exits, and closing our end is always in our hands.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._transport: asyncio.BaseTransport | None = None

    def close_child_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    async def reader(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=_CHUNK * 16)
        file = os.fdopen(self.read_fd, "rb", buffering=0)
        self.read_fd = -1  # the transport owns it now
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), file
        )
        return stream

    def close(self) -> None:
        self.close_child_end()
        if self._transport is not None:
            self._transport.close()
        elif self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


async def _pump(pipe: _Pipe | None, sink: BoundedBuffer) -> None:
    if pipe is None:
        return
    stream = await pipe.reader()
    while chunk := await stream.read(_CHUNK):
        sink.write(chunk)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()


async def _run(
    proc: asyncio.subprocess.Process,
    pipes: tuple[_Pipe, _Pipe | None],
    sinks: tuple[BoundedBuffer, BoundedBuffer],
    stdin: bytes | None,
) -> int:
    readers = [asyncio.ensure_future(_pump(p, s)) for p, s in zip(pipes, sinks, strict=True)]
    try:
        await _feed(proc, stdin)
        code = await proc.wait()
        # The child is gone; its output may still be in the pipes (or a grandchild may hold them).
        _, pending = await asyncio.wait(readers, timeout=_DRAIN_S)
        if pending:
            # Something the command left in the background still holds its output: end it.
            _kill_group(proc)
        return code
    finally:
        for r in readers:
            r.cancel()


async def _spawn(
    argv: Sequence[str],
    pipes: tuple[_Pipe, _Pipe | None],
    cwd: Path | None,
    env: Mapping[str, str] | None,
    stdin: bool,
) -> asyncio.subprocess.Process:
    out, err = pipes
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=out.write_fd,
            stderr=asyncio.subprocess.STDOUT if err is None else err.write_fd,
            start_new_session=True,
        )
    finally:
        # Only the child writes: with our copies closed, the pipes end when its writers do.
        out.close_child_end()
        if err is not None:
            err.close_child_end()


def _end(proc: asyncio.subprocess.Process) -> None:
    _kill_group(proc)
    if proc.stdin is not None:
        proc.stdin.close()


async def run_process(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    max_output_bytes: int | None = None,
    head_only: bool = False,
    merge_stderr: bool = False,
) -> ProcessResult:
    """Run `argv` to its end, or kill its process group after `timeout_s` or on cancellation.

    `max_output_bytes` bounds stdout and stderr each (None keeps all);
    with `head_only` only the first bytes are kept. With `merge_stderr`,
    stderr goes into stdout in the order written (what a person at a terminal would see).
    """
    started = time.monotonic()
    pipes = (_Pipe(), None if merge_stderr else _Pipe())
    sinks = (
        BoundedBuffer(max_output_bytes, head_only=head_only),
        BoundedBuffer(max_output_bytes, head_only=head_only),
    )
    timed_out = False
    try:
        proc = await _spawn(argv, pipes, cwd, env, stdin is not None)
        try:
            code = await asyncio.wait_for(_run(proc, pipes, sinks, stdin), timeout_s)
        except TimeoutError:
            timed_out = True
            _end(proc)
            code = await proc.wait()
        except BaseException:
            # Cancelled (or anything else): the command must not outlive the one waiting for it.
            _end(proc)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(proc.wait()), _DRAIN_S)
            raise
    finally:
        for pipe in pipes:
            if pipe is not None:
                pipe.close()
    out, err = sinks
    return ProcessResult(
        exit_code=code,
        stdout=out.value(),
        stderr=err.value(),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        omitted_bytes=out.omitted + err.omitted,
    )
