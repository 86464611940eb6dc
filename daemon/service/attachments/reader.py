"""Reading PDFs and spreadsheets in a child process, under a deadline and a memory cap.

A submitted file is untrusted input, and the parsers are not ours: pypdf has had inputs that
loop for ever, pdfium is native code a damaged file may crash, and a small zip may inflate to
gigabytes. A thread cannot be stopped, and a crash in the daemon's process would end every
task. So the daemon runs `python -m daemon.service.attachments.reader` for a submit that
carries a PDF or a spreadsheet: the attachments go in on stdin as JSON, what the models get of
them comes back on stdout as JSON (never pickle: the child parses hostile files, so its
answer is data, not code). The child runs with an empty environment (no API key reaches it),
its own session, a cap on its address space and on its CPU time; the daemon kills it at
`[attachments] read_timeout_s`. Each way a read can fail is a refusal naming the attachment
or the setting, and the task is not created.

Images are only measured (their header), in the daemon's process: nothing to parse.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import resource
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from daemon.service.attachments.prepare import (
    AttachmentLimits,
    Decoded,
    Prepared,
    read_attachments,
)
from daemon.service.errors import Busy, InvalidParams, ServiceError

__all__ = ["needs_child", "read_in_child"]

#: The child's address space cap: room for Python, pdfium and a rendered page or ten, not for
#: a decompression bomb.
MEMORY_CAP_BYTES = 4 * 1024**3
#: Where `daemon` is imported from, for the child's path.
_ROOT = str(Path(__file__).resolve().parents[3])
#: Readers at once: each is an interpreter that may use up to MEMORY_CAP_BYTES; more submits
#: wait their turn (their deadline starts once they read).
MAX_READERS = 2
_READERS = asyncio.Semaphore(MAX_READERS)

log = logging.getLogger("tierd.tasks")


def needs_child(items: Sequence[Decoded]) -> bool:
    """Whether any of these is parsed (a PDF or a spreadsheet), not only measured."""
    return any(item.kind != "image" for item in items)


def _request(items: Sequence[Decoded], limits: AttachmentLimits) -> bytes:
    encoded = [
        {**asdict(item), "data": base64.b64encode(item.data).decode("ascii")} for item in items
    ]
    return json.dumps({"limits": asdict(limits), "items": encoded}).encode()


def _prepared(items: Sequence[Decoded], reply: dict[str, Any]) -> list[Prepared]:
    out = []
    for item, read in zip(items, reply["prepared"], strict=True):
        renders = [(int(page), base64.b64decode(png)) for page, png in read["renders"]]
        out.append(Prepared(item, read["summary"], read["text"], renders, read["facts"]))
    return out


def _timed_out(timeout_s: float) -> InvalidParams:
    return InvalidParams(
        f"attachments: reading them took over {timeout_s:g} s; nothing was submitted. A file "
        f"that takes this long to read is damaged or hostile; if it is not, raise "
        f"attachments.read_timeout_s",
        {"field": "attachments", "key": "attachments.read_timeout_s"},
    )


def _unreadable(problem: str) -> InvalidParams:
    return InvalidParams(
        f"attachments: the reader stopped ({problem}); nothing was submitted. The file is "
        "damaged or hostile, or too big to read within the reader's memory",
        {"field": "attachments"},
    )


def _answer(out: bytes, items: Sequence[Decoded]) -> list[Prepared]:
    """The child's answer as what the models get; InvalidParams for a refusal."""
    try:
        reply = json.loads(out)
        if "refused" in reply:
            refused = reply["refused"]
            raise InvalidParams(str(refused["message"]), refused["data"])
        return _prepared(items, reply)
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable(f"an answer that is not the reader's: {exc}") from None


async def read_in_child(
    items: Sequence[Decoded], limits: AttachmentLimits, timeout_s: float
) -> list[Prepared]:
    """What the models get of each attachment, read by a child process within `timeout_s`."""
    # Up to max_task_bytes of base64 and JSON: built and parsed off the event loop.
    request = await asyncio.to_thread(_request, items, limits)
    async with _READERS:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon.service.attachments.reader",
                str(timeout_s),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PYTHONPATH": _ROOT, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"},
                start_new_session=True,
            )
        except OSError as exc:
            raise Busy(f"attachments: no reader could start ({exc}); try again") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(request), timeout_s)
        except TimeoutError:
            raise _timed_out(timeout_s) from None
        finally:
            if proc.returncode is None:  # timed out, or the submit was cancelled
                proc.kill()
                await proc.wait()
    code = proc.returncode
    if code != 0:
        tail = err.decode("utf-8", "replace").strip()[-2000:]
        log.warning("attachment reader: exit %s: %s", code, tail)
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        raise _unreadable("out of memory" if "MemoryError" in tail else why)
    return await asyncio.to_thread(_answer, out, items)


# --- the child --------------------------------------------------------------------------------


def _lower(which: int, soft: int, hard: int) -> None:
    """Lower a limit to (soft, hard), never above what the process may already use."""
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def _limit_self(timeout_s: float) -> None:
    _lower(resource.RLIMIT_AS, MEMORY_CAP_BYTES, MEMORY_CAP_BYTES)
    cpu = math.ceil(timeout_s) + 5  # a backstop: the daemon kills it at timeout_s
    _lower(resource.RLIMIT_CPU, cpu, cpu + 5)
    _lower(resource.RLIMIT_CORE, 0, 0)


def main() -> int:
    """The child: read the request on stdin, answer on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _limit_self(float(sys.argv[1]))
    request = json.loads(sys.stdin.buffer.read())
    limits = AttachmentLimits(**request["limits"])
    items = [
        Decoded(**{**item, "data": base64.b64decode(item["data"])}) for item in request["items"]
    ]
    try:
        prepared = read_attachments(items, limits)
    except ServiceError as exc:
        reply: dict[str, Any] = {"refused": {"message": exc.message, "data": exc.data}}
    else:
        reply = {
            "prepared": [
                {
                    "summary": p.summary,
                    "text": p.text,
                    "renders": [
                        (page, base64.b64encode(png).decode("ascii")) for page, png in p.renders
                    ],
                    "facts": p.facts,
                }
                for p in prepared
            ]
        }
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    os._exit(0)  # no finalizers of the parsers' native parts: the answer is out


if __name__ == "__main__":
    sys.exit(main())
