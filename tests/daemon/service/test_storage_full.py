"""A full disk under the store: a clear error (-32006 / HTTP 507), nothing lost, work goes on
once space returns.

The daemon's home is a 4 MiB tmpfs in a mount namespace of its own (`unshare -rm`, no real
disk is filled); the test fills it through `/proc/<pid>/root`, the daemon's view of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator

FINAL = {"completed", "failed", "canceled"}
SLOW = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 2.0}}


class TmpfsDaemon(DaemonProcess):
    """`tierd serve` whose home is a small tmpfs that only it (and root, via /proc) sees."""

    def __init__(self, home: Path, config: Path) -> None:
        super().__init__(home, fresh=True)  # started in its own mount namespace, by spawn()
        self.config = config

    @property
    def discovery(self) -> Path:
        return self.view / "daemon.json"

    @property
    def view(self) -> Path:
        """The home as the daemon sees it."""
        pid = self.proc.pid if self.proc is not None else 0
        return Path(f"/proc/{pid}/root") / self.home.relative_to("/")

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        script = (
            f'mount -t tmpfs -o size=4m,mode=0700 tmpfs "{self.home}" && '
            f'cp "{self.config}" "{self.home}/config.toml" && exec "$@"'
        )
        command = [sys.executable, "-m", "daemon.cli", "serve", "--port", "0", *args]
        return subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", script, "sh", *command],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.config.parent / "daemon.err", "a", encoding="utf-8"),
            text=True,
        )

    def fill(self) -> Path:
        """Fill the daemon's disk to the last byte; the filler file's path."""
        filler = self.view / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        return filler


def test_a_full_disk_is_a_clear_error_and_work_resumes_when_space_returns(tmp_path: Path) -> None:
    if not shutil.which("unshare"):
        pytest.fail("this test needs `unshare` (util-linux)")
    home = tmp_path / "home"
    home.mkdir()
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    with running_simulator(SLOW) as sim:
        write_config(conf_dir, sim.url)
        d = TmpfsDaemon(home, conf_dir / "config.toml").start()
        try:
            with d.http() as h:
                before = h.post("/v1/tasks", json={"goal": "Accepted before the disk filled"})
                assert before.status_code == 202, before.text
                early = before.json()["task_id"]
                wait_for(lambda: h.get(f"/v1/tasks/{early}").json()["state"] == "running", 30)
                filler = d.fill()
                refused = h.post("/v1/tasks", json={"goal": "Submitted on a full disk"})
                rpc = d.rpc("task/submit", {"goal": "Submitted on a full disk, by RPC"})
                # Reads still answer while the disk is full.
                assert h.get(f"/v1/tasks/{early}").status_code == 200
                time.sleep(3)  # the early task's streams now want to write
                filler.unlink()
                after = h.post("/v1/tasks", json={"goal": "Submitted after space returned"})
                late = after.json()["task_id"]
                done = {
                    t: wait_for(
                        lambda t=t: (r := h.get(f"/v1/tasks/{t}").json())["state"] in FINAL and r,
                        90,
                    )
                    for t in (early, late)
                }
        finally:
            d.stop()
        err = (conf_dir / "daemon.err").read_text()
    assert refused.status_code == 507, refused.text
    body = refused.json()["error"]
    assert body["code"] == -32006 and "full" in body["message"] and body["data"]["where"]
    assert rpc["error"]["code"] == -32006, rpc
    assert after.status_code == 202, after.text
    assert done[late]["state"] == "completed", done[late]["error"]
    # The task accepted before the disk filled was not lost: it finished once there was room.
    assert done[early]["state"] == "completed", done[early]["error"]
    assert "Traceback" not in err, err[-3000:]
