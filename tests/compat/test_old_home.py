"""A home written by an earlier tierd resumes under today's code.

`home_3fc44ca/` was made by commit 3fc44ca (the last one before the sub-package layout) with
`make_old_home.py`: a five-stream task was killed with SIGKILL while s1, s2 and s4 were
accepted, s3 was executing and s5 waited on s3 and s4. Its SQLite files are as that version
wrote them (write-ahead log folded into the database file). Today's daemon must open both
databases, keep the memoised steps (their keys are the compatibility contract) and finish the
task without calling the model again for anything that had been saved.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, stats

FIXTURE = Path(__file__).resolve().parent / "home_3fc44ca"
FINAL = {"completed", "failed", "canceled"}


def _point_at(home: Path, old_url: str, new_url: str) -> None:
    """The stored task settings name the simulator of the day the home was made."""
    with sqlite3.connect(home / "tierd.db") as db:
        rows = db.execute("SELECT id, settings_json FROM tasks").fetchall()
        for task_id, settings in rows:
            db.execute(
                "UPDATE tasks SET settings_json = ? WHERE id = ?",
                (settings.replace(old_url, new_url), task_id),
            )


def _answered(calls: list[dict[str, Any]], purpose: str, stream: str | None = None) -> int:
    return sum(
        1
        for c in calls
        if c["purpose"] == purpose
        and (stream is None or c["stream_id"] == stream)
        and c["status"] == 200
        and not c["disconnected"]
    )


def test_a_task_killed_under_the_old_layout_finishes_without_repeating_saved_calls(
    tmp_path: Path,
) -> None:
    facts = json.loads((FIXTURE / "fixture.json").read_text())
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home)
    (home / "fixture.json").unlink()
    with sqlite3.connect(home / "tierd.db") as db:
        saved = {k for (k,) in db.execute("SELECT key FROM steps")}
    assert {"plan:0", "exec:s1:r0:a0", "exec:s4:r0:a0", "review:s2:r0"} <= saved

    scenario = facts["scenario"]
    scenario["streams"]["s3"]["latency"] = 0.2  # it was slow only so the kill found it running
    with running_simulator(scenario) as sim:
        write_config(home, sim.url)
        _point_at(home, facts["simulator_url"], sim.url)
        d = DaemonProcess(home).start()
        try:
            client = d.client()
            task_id = facts["task_id"]
            task = wait_for(lambda: (t := client.get(task_id))["state"] in FINAL and t, 60)
            assert task["state"] == "completed", task["error"]
            assert task["result"]
            calls = stats(sim.url)["calls"]
        finally:
            d.stop()

    done = [s for s, state in facts["streams_before_kill"].items() if state == "accepted"]
    assert sorted(done) == ["s1", "s2", "s4"]
    assert _answered(calls, "plan") == 0, "the saved plan was asked for again"
    for sid in done:
        assert _answered(calls, "execute", sid) == 0, f"saved stream {sid} executed again"
        assert _answered(calls, "review", sid) == 0, f"saved review of {sid} asked again"
    # What was not saved runs exactly once.
    assert _answered(calls, "execute", "s3") == 1
    assert _answered(calls, "execute", "s5") == 1
    assert {s["id"]: s["state"] for s in task["streams"]} == {
        "s1": "accepted",
        "s2": "accepted",
        "s3": "accepted",
        "s4": "accepted",
        "s5": "accepted",
    }
