"""Remake `home_3fc44ca/` with the old layout's code: a five-stream task killed mid-run.

Run from a checkout of commit 3fc44ca (its tests use `conftest` and `simhelpers`):
    git archive 3fc44ca | tar -x -C /tmp/old && cd /tmp/old
    PYTHONPATH=/tmp/old python /path/to/make_old_home.py /tmp/old OUT_DIR
then fold each database's write-ahead log into it (PRAGMA wal_checkpoint(TRUNCATE)).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] + "/tests")
from conftest import DaemonProcess, wait_for, write_config
from simhelpers import running_simulator

out = Path(sys.argv[2])


def stream(sid, deps=()):
    return {
        "id": sid,
        "title": f"Stream {sid}",
        "job": f"Do {sid}.",
        "output_definition": f"The {sid} text.",
        "acceptance_check": f"{sid} is done.",
        "ownership": [f"area-{sid}"],
        "depends_on": list(deps),
    }


specs = [stream("s1"), stream("s2"), stream("s3"), stream("s4", ["s1"]), stream("s5", ["s3", "s4"])]
scenario = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.2},
    "plan": {"streams": specs},
    "streams": {"s3": {"latency": 30.0}},
}
home = Path("/tmp/old_home_run")
shutil.rmtree(home, ignore_errors=True)
home.mkdir()
with running_simulator(scenario) as sim:
    write_config(home, sim.url)
    d = DaemonProcess(home).start()
    c = d.client()
    tid = c.submit("Resume me after an upgrade")["task_id"]
    wait_for(
        lambda: {s["id"]: s["state"] for s in c.get(tid)["streams"]}.get("s4") == "accepted", 60
    )
    time.sleep(0.3)
    before = {s["id"]: s["state"] for s in c.get(tid)["streams"]}
    c.close()
    d.kill()
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
for name in os.listdir(home):
    if name.startswith(("tierd.db", "checkpoints.db", "config.toml", "token")):
        shutil.copy2(home / name, out / name)
(out / "fixture.json").write_text(
    json.dumps(
        {
            "task_id": tid,
            "streams_before_kill": before,
            "simulator_url": sim.url,
            "scenario": scenario,
            "made_by_commit": "3fc44ca",
        },
        indent=2,
    )
    + "\n"
)
print(before, os.listdir(out))
