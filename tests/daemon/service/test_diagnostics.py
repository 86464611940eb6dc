"""`process_snapshot()` describes the process that calls it, also after a fork."""

from __future__ import annotations

import json
import os

from daemon.service.diagnostics import process_snapshot


def test_a_forked_child_reports_its_own_file_descriptors_not_its_parents() -> None:
    before = process_snapshot()  # looked up in the parent first, as a fork server would
    assert before.open_fds is not None and before.rss_bytes > 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: 64 more descriptors than the parent has
        try:
            extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(64)]
            seen = process_snapshot().open_fds
            os.write(write_end, json.dumps({"fds": seen, "extra": len(extra)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        reply = json.loads(os.read(read_end, 4096))
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert reply["fds"] >= before.open_fds + reply["extra"], (reply, before.open_fds)
