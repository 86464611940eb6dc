"""Crash chaos: twenty tasks, the daemon SIGKILLed at random moments, nothing lost.

Twenty tasks with four streams each (two of them behind dependencies) run on the simulator,
which lives in the test process so it survives every kill and counts every call. The daemon
is killed with SIGKILL at seeded-random moments (the seed is printed; set TIERD_CHAOS_SEED to
replay a run): while tasks are still being submitted and planned, while streams run, and around
review and merge. Every further kill (TIERD_CHAOS_KILLS > 3) comes either soon after a start
(the engine may still be loading) or after a random number of model answers. Each time a new
daemon starts on the same home, and the client sends again every submit it never saw answered,
with the same idempotency key: the daemon answers the task it already made (duplicate) or makes
it now, never a second one.

In the end every task is completed with exactly the output the simulator scripted, no task is
lost or duplicated, and an SSE client that followed the whole run (reconnecting with
Last-Event-ID after each kill) saw every event exactly once.

And only calls whose answers were not saved ran again. Every call the simulator answered is
matched to the step it belongs to (the `X-Tierd-Step` header tierd sends: the call's memo key,
for every purpose: plan, execute, review, fix, conflicts, merge), and that step is in the
store's `steps` table at the end. A step answered twice is a failure unless a kill came
between the first answer and the second call and the step was demonstrably not saved when
that kill struck: the store read right after each kill (a copy, read-only) did not hold it.
No allowance "one more execute per kill": a step saved is never asked for again.
TIERD_CHAOS_KILLS and TIERD_CHAOS_TASKS make a longer run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import connect_sse
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, stats
from support.store_reader import copy_sqlite, pg_url, query

pytestmark = pytest.mark.slow

TASKS = int(os.environ.get("TIERD_CHAOS_TASKS", "20"))
KILLS = int(os.environ.get("TIERD_CHAOS_KILLS", "3"))
SEED = int(os.environ.get("TIERD_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
TERMINAL = {"completed", "failed", "canceled"}
#: A poll of a PostgreSQL store before its tables exist.
_PG_ERRORS = psycopg.Error
STREAM_IDS = ["a", "b", "c", "d"]


def _stream(id_: str, deps: list[str]) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Part {id_}",
        "job": f"Write part {id_}.",
        "output_definition": f"Part {id_} as one paragraph.",
        "ownership": [f"part-{id_}/"],
        "depends_on": deps,
        "acceptance_check": "The paragraph is there.",
    }


def _output(sid: str) -> str:
    return f"Chaos output of stream {sid}: scripted text."


# Latencies long enough that at any moment some calls are in flight, short enough that the
# run fits its CI budget. Ceiling 10: twenty tasks share ten agent slots.
SCENARIO = {
    "seed": 9,
    "latency": {"planner": [0.8, 1.6], "orchestrator": [0.1, 0.4], "executor": [0.4, 1.2]},
    "purpose_latency": {"merge": [0.3, 0.8]},
    "plan": {
        "streams": [
            _stream("a", []),
            _stream("b", []),
            _stream("c", ["a"]),
            _stream("d", ["b", "c"]),
        ]
    },
    "streams": {sid: {"output": _output(sid)} for sid in STREAM_IDS},
}
EXPECTED_RESULT = "# Result\n\n" + "\n\n".join(f"## {s}\n\n{_output(s)}" for s in STREAM_IDS)


def _goal(i: int) -> str:
    return f"Chaos task number {i:02d}: write the four parts"


def _key(goal: str) -> str:
    # One key per task for the whole run: every resubmission of a goal carries the same one.
    return f"chaos-{SEED}-{goal.split()[3].rstrip(':')}"


# --- looking at the database from outside ------------------------------------------------------


def _integrity(home: Path) -> list[str]:
    """SQLite's own check of the store and checkpoint files ("ok" each); PostgreSQL has no
    file of ours to check."""
    if pg_url(home) is not None:
        return ["ok"]
    found = []
    for db in (home / "tierd.db", home / "checkpoints.db"):
        if db.exists():
            with tempfile.TemporaryDirectory() as tmp:
                conn = sqlite3.connect(copy_sqlite(db, Path(tmp)))
                try:
                    found += [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
                finally:
                    conn.close()
    return found


@dataclass
class Snapshot:
    """What the store held at the moment of a kill (read after the process is gone)."""

    states: dict[str, str]
    accepted: set[tuple[str, str]]
    planned: set[str]
    integrity: list[str]
    #: The steps saved (task id, memo key) when the daemon died: none of them may be asked
    #: of a model again.
    steps: set[tuple[str, str]] = field(default_factory=set)
    #: Wall-clock time just after the kill: any model call started later came from a later
    #: daemon.
    killed_at: float = 0.0
    #: Wall-clock time just before the kill signal: a call the simulator saw from then on
    #: may come from the next daemon.
    kill_started: float = 0.0
    #: Wall-clock time just before the next daemon was started: a call the simulator saw
    #: before then came from the killed one (or an earlier one).
    restart_at: float = 0.0


def _snapshot(home: Path, kill_started: float) -> Snapshot:
    states = {str(k): str(v) for k, v in query(home, "SELECT id, state FROM tasks")}
    accepted = {
        (str(t), str(sid))
        for t, sid in query(home, "SELECT task_id, stream_id FROM streams WHERE state = 'accepted'")
    }
    planned = {str(r[0]) for r in query(home, "SELECT id FROM tasks WHERE plan_json IS NOT NULL")}
    steps = {(str(t), str(k)) for t, k in query(home, "SELECT task_id, key FROM steps")}
    integrity = _integrity(home)
    return Snapshot(states, accepted, planned, integrity, steps, time.time(), kill_started)


class Progress:
    """Cheap polling of the live store (a copy of it) for the kill triggers."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def states(self) -> Counter[str]:
        if pg_url(self.home) is None and not (self.home / "tierd.db").exists():
            return Counter()
        try:
            return Counter(
                dict(query(self.home, "SELECT state, count(*) FROM tasks GROUP BY state"))
            )
        except (sqlite3.Error, _PG_ERRORS):
            return Counter()  # caught mid-copy, or before the schema; the next poll sees it

    def accepted(self) -> int:
        try:
            return int(
                query(self.home, "SELECT count(*) FROM streams WHERE state = 'accepted'")[0][0]
            )
        except (sqlite3.Error, _PG_ERRORS):
            return 0


# --- the SSE client that follows the whole run -------------------------------------------------


@dataclass
class Follower:
    """Follows /v1/events across kills, reconnecting with Last-Event-ID to whichever daemon
    the discovery file names."""

    home: Path
    token: str
    ids: list[int] = field(default_factory=list)
    log: list[tuple[int, int, str, str]] = field(default_factory=list)
    connects: int = 0
    stop_at: int | None = None
    halt: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chaos-sse", daemon=True)

    @property
    def last(self) -> int:
        return self.ids[-1] if self.ids else 0

    def done(self) -> bool:
        return self.stop_at is not None and self.last >= self.stop_at

    def _run(self) -> None:
        while not self.halt.is_set() and not self.done():
            try:
                url = json.loads((self.home / "daemon.json").read_text())["url"]
                headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": str(self.last)}
                timeout = httpx.Timeout(5.0, read=20.0)  # the daemon pings every 10 s
                with (
                    httpx.Client(timeout=timeout) as http,
                    connect_sse(http, "GET", f"{url}/v1/events", headers=headers) as source,
                ):
                    source.response.raise_for_status()
                    self.connects += 1
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue  # a keep-alive: the SSE parser repeats the last id on it
                        self.ids.append(int(sse.id))
                        self.log.append((int(sse.id), self.connects, url, sse.data[:120]))
                        if self.done() or self.halt.is_set():
                            return
            except (httpx.HTTPError, OSError, ValueError, KeyError):
                pass  # the daemon is down or restarting: look again
            time.sleep(0.1)


# --- submitting while the daemon may die ---------------------------------------------------------


@dataclass
class Submitter:
    """Submits the tasks one by one at a random pace; an ack is only counted when received."""

    rng: random.Random
    daemon: DaemonProcess
    acked: dict[str, str] = field(default_factory=dict)  # goal -> task id
    unknown: list[str] = field(default_factory=list)  # sent, no answer (killed meanwhile)
    duplicates: list[str] = field(default_factory=list)  # resent, answered "already made"
    replayed: int = 0  # answered submits sent again after a restart
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[str] = field(default_factory=lambda: [_goal(i) for i in range(TASKS)])
    gaps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gaps = [self.rng.uniform(0.05, 0.35) for _ in range(TASKS)]

    def run(self) -> None:
        """Submit until done or the daemon dies; the caller restarts and calls again."""
        while True:
            with self.lock:
                if not self.pending:
                    return
                goal, d = self.pending[0], self.daemon
            try:
                with d.http() as h:
                    r = h.post("/v1/tasks", json={"goal": goal, "idempotency_key": _key(goal)})
            except httpx.HTTPError:
                with self.lock:
                    self.unknown.append(goal)
                return
            assert r.status_code == 202, r.text
            with self.lock:
                reply = r.json()
                if reply.get("duplicate"):
                    # Only a submit whose answer was lost is ever sent twice.
                    assert goal in self.unknown, (goal, reply)
                    self.duplicates.append(goal)
                self.acked[goal] = reply["task_id"]
                self.pending.pop(0)
            time.sleep(self.gaps[len(self.acked) % len(self.gaps)])

    def reconcile(self, daemon: DaemonProcess) -> None:
        """After a restart: a submit whose answer was lost may or may not have been stored.
        It is still first in `pending`, so the next run() sends it again with its key.

        Whether or not a kill hit a submit in flight, the last answered submit is sent again
        too, as a client that lost that answer would: the new daemon must know its key and
        name the same task."""
        with self.lock:
            self.daemon = daemon
            if not self.acked:
                return
            goal, task_id = list(self.acked.items())[-1]
        with daemon.http() as h:
            r = h.post("/v1/tasks", json={"goal": goal, "idempotency_key": _key(goal)})
        assert r.status_code == 202, r.text
        assert r.json()["task_id"] == task_id and r.json()["duplicate"] is True, r.json()
        self.replayed += 1


def _all_tasks(d: DaemonProcess) -> list[dict[str, Any]]:
    with d.http() as h:
        r = h.get("/v1/tasks", params={"limit": 500})
    r.raise_for_status()
    return r.json()["tasks"]


def _all_terminal(d: DaemonProcess) -> list[dict[str, Any]] | None:
    try:
        tasks = _all_tasks(d)
    except httpx.HTTPError:
        return None  # busy resuming twenty tasks: ask again
    if len(tasks) >= TASKS and all(t["state"] in TERMINAL for t in tasks):
        return tasks
    return None


def _start(home: Path, pycache: Path) -> DaemonProcess:
    # Restarting is this test's main cost: where the environment forbids writing bytecode
    # (PYTHONDONTWRITEBYTECODE), every restart would compile litellm and langgraph again.
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(pycache)}
    return DaemonProcess(home, env).start(timeout=120)


# --- the test -------------------------------------------------------------------------------------


def _answered(sim_url: str) -> int:
    return int(stats(sim_url)["answered"])


def _trigger(kind: str, progress: Progress, acked: int, sim_url: str, need: int) -> bool:
    """Whether the run reached the phase a kill is aimed at (a random delay follows)."""
    states = progress.states()
    if kind == "planning":
        return states["planning"] > 0 and acked >= 3
    if kind == "streams":
        return progress.accepted() >= TASKS // 2
    if kind == "merge":
        return states["reviewing"] + states["merging"] > 0 or states["completed"] >= 2
    # "any": once the current daemon has had `need` more answers, or when all is done.
    return _answered(sim_url) >= need or sum(states[s] for s in TERMINAL) >= TASKS


def _wait_for_moment(
    kind: str, rng: random.Random, sim_url: str, progress: Progress, submitter: Submitter
) -> float:
    """Wait until the run reaches the moment a kill of `kind` aims at; the delay it waited."""
    if kind == "any" and rng.random() < 0.3:
        # Soon after a start: the engine may still be loading, tasks resuming.
        delay = rng.uniform(0.2, 3.0)
    else:
        # After some random amount of model work by this daemon, plus a little.
        need = _answered(sim_url) + rng.randint(1, 30) if kind == "any" else 0
        wait_for(
            lambda k=kind, m=need: _trigger(k, progress, len(submitter.acked), sim_url, m),
            300,
            0.1,
        )
        delay = rng.uniform(0.0, 0.5)
    time.sleep(delay)
    return delay


def _check_tasks(d: DaemonProcess, tasks: list[dict[str, Any]], submitter: Submitter) -> set[str]:
    """Zero lost, nothing extra, every task completed with exactly the scripted outputs."""
    # Each goal once, every acknowledged id among them.
    goals = Counter(t["goal"] for t in tasks)
    assert goals == Counter(_goal(i) for i in range(TASKS)), goals
    ids = {t["id"] for t in tasks}
    assert set(submitter.acked.values()) <= ids
    assert len(ids) == TASKS
    with d.http() as h:
        full = {t: h.get(f"/v1/tasks/{t}").json() for t in ids}
    for task in full.values():
        assert task["state"] == "completed", (task["id"], task["error"])
        streams = {s["id"]: s for s in task["streams"]}
        assert set(streams) == set(STREAM_IDS)
        for sid, s in streams.items():
            assert s["state"] == "accepted" and s["output"] == _output(sid), s
        assert task["result"] == EXPECTED_RESULT
        assert [v["id"] for v in task["report"]["streams"]] == STREAM_IDS
    return ids


#: The memo key each purpose's calls carry (`roles/`): `{sid}` is the call's stream.
STEP_OF_PURPOSE = {
    "plan": "plan:",
    "execute": "exec:{sid}:r",
    "review": "review:{sid}:r",
    "fix": "fix:{sid}:r",
    "conflicts": "conflicts:",
    "merge": "merge:",
}


def _answered_steps(
    records: list[dict[str, Any]], saved: dict[tuple[str, str], float], ids: set[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every call the simulator answered, matched to its step: (task id, memo key) -> calls.
    Each names a step of its purpose (and stream), and that step was saved in the end."""
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in records:
        if c["status"] != 200 or c["disconnected"]:
            continue
        where = (c["seq"], c["task_id"], c["purpose"], c["stream_id"], c["step"])
        assert c["task_id"] in ids, where
        assert c["step"], f"an answered call names no step (X-Tierd-Step): {where}"
        prefix = STEP_OF_PURPOSE[c["purpose"]].format(sid=c["stream_id"])
        assert c["step"].startswith(prefix), f"the step is not of the call's purpose: {where}"
        assert (c["task_id"], c["step"]) in saved, f"an answered step was never saved: {where}"
        by_step.setdefault((c["task_id"], c["step"]), []).append(c)
    return by_step


def _check_only_unsaved_steps_repeated(
    records: list[dict[str, Any]],
    snapshots: list[Snapshot],
    saved: dict[tuple[str, str], float],
    ids: set[str],
) -> Counter[str]:
    """Only calls whose answers were not saved ran again: for each step answered twice, a
    kill came between the first answer and the next call, and the step was not saved when it
    struck (not in the store read after the kill, and saved for good only later)."""
    by_step = _answered_steps(records, saved, ids)
    problems: list[str] = []
    for (task_id, key), calls in by_step.items():
        calls.sort(key=lambda c: c["started_wall"])
        for first, again in pairwise(calls):
            # The kills that ended the first call's daemon, or a later one, before the next.
            between = [
                k
                for k in snapshots
                if first["started_wall"] < k.restart_at and k.kill_started <= again["started_wall"]
            ]
            if not between:
                problems.append(f"{task_id} {key}: answered twice within one daemon's life")
                continue
            for k in between:
                if (task_id, key) in k.steps or saved[(task_id, key)] < k.kill_started:
                    problems.append(
                        f"{task_id} {key}: saved before the kill at {k.kill_started:.3f}, "
                        f"asked again at {again['started_wall']:.3f} (call {again['seq']})"
                    )
    assert not problems, "\n".join(problems[:30]) + f"\n({len(problems)} in all)"
    # Every stream of every task was really done by an executor.
    for task_id in ids:
        for sid in STREAM_IDS:
            assert any(t == task_id and k.startswith(f"exec:{sid}:") for t, k in by_step), (
                task_id,
                sid,
            )
    return Counter(c["purpose"] for calls in by_step.values() for c in calls)


def _check_no_finished_work_repeated(
    records: list[dict[str, Any]], snapshots: list[Snapshot]
) -> None:
    """Once a stream was accepted (or a plan stored), no later daemon called the model for it
    again, under any key."""
    for snap in snapshots:
        later = Counter(
            (c["task_id"], c["stream_id"], c["purpose"])
            for c in records
            if c["started_wall"] > snap.killed_at
        )
        for task_id, sid in snap.accepted:
            for purpose in ("execute", "review"):
                assert later[(task_id, sid, purpose)] == 0, (task_id, sid, purpose)
        for task_id in snap.planned:
            assert later[(task_id, None, "plan")] == 0, task_id
    assert set().union(*(s.accepted for s in snapshots))
    assert set().union(*(s.planned for s in snapshots))


def _check_events_seen_once(follower: Follower, d: DaemonProcess, home: Path) -> list[int]:
    """The SSE client saw every event exactly once, in order, across every kill."""
    last = int(query(home, "SELECT max(id) FROM events")[0][0])
    follower.stop_at = last
    wait_for(follower.done, 60, 0.1)
    seen = list(follower.ids)
    dups = {i for i, n in Counter(seen).items() if n > 1}
    assert not dups, [e for e in follower.log if e[0] in dups]
    assert seen == sorted(seen)
    everything: list[int] = []
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=20.0)) as http,
        connect_sse(
            http,
            "GET",
            f"{d.url}/v1/events",
            headers={"Authorization": f"Bearer {d.token}", "Last-Event-ID": "0"},
        ) as source,
    ):
        for sse in source.iter_sse():
            if sse.data:
                everything.append(int(sse.id))
                if everything[-1] >= seen[-1]:
                    break
    assert seen == everything
    assert follower.connects >= 2  # it did reconnect after a kill
    return seen


@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_nothing_and_repeats_no_finished_work(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    print(f"chaos seed {SEED} (TIERD_CHAOS_SEED={SEED} replays it), {TASKS} tasks, {KILLS} kills")
    rng = random.Random(SEED)
    t0 = time.monotonic()
    plan = ["planning", "streams", "merge", "any"][:KILLS] + ["any"] * max(0, KILLS - 4)
    with running_simulator(SCENARIO) as sim:
        write_config(home, sim.url, concurrency="ceiling = 10")
        daemons: list[DaemonProcess] = []
        follower: Follower | None = None
        try:
            pycache = tmp_path_factory.mktemp("pycache")
            d = _start(home, pycache)
            daemons.append(d)
            follower = Follower(home, d.token)
            follower.thread.start()
            submitter = Submitter(rng, d)
            progress = Progress(home)
            snapshots: list[Snapshot] = []
            submitting = threading.Thread(target=submitter.run, daemon=True)
            submitting.start()

            for n, kind in enumerate(plan, 1):
                delay = _wait_for_moment(kind, rng, sim.url, progress, submitter)
                before = progress.states()
                kill_started = time.time()
                d.kill()
                snap = _snapshot(home, kill_started)
                snapshots.append(snap)
                print(
                    f"{time.monotonic() - t0:6.1f}s kill {n} ({kind}, +{delay:.2f}s): "
                    f"states {dict(before)}, "
                    f"{len(snap.accepted)} streams accepted"
                )
                assert all(r == "ok" for r in snap.integrity), snap.integrity
                submitting.join(30)
                snap.restart_at = time.time()
                d = _start(home, pycache)
                daemons.append(d)
                print(f"{time.monotonic() - t0:6.1f}s daemon {n + 1} started")
                submitter.reconcile(d)
                submitting = threading.Thread(target=submitter.run, daemon=True)
                submitting.start()

            submitting.join(120)
            assert not submitting.is_alive() and not submitter.pending
            tasks = wait_for(lambda: _all_terminal(d), 300, 0.5)
            ids = _check_tasks(d, tasks, submitter)
            records = stats(sim.url)["calls"]
            saved = {
                (t, k): float(at)
                for t, k, at in query(home, "SELECT task_id, key, created_at FROM steps")
            }
            purposes = _check_only_unsaved_steps_repeated(records, snapshots, saved, ids)
            assert {"plan", "execute", "review", "merge"} <= set(purposes), purposes
            _check_no_finished_work_repeated(records, snapshots)

            # The kills hit the phases they were meant to.
            hit = [set(s.states.values()) for s in snapshots]
            assert "planning" in hit[0], hit[0]
            if KILLS >= 2:
                assert any(s.accepted for s in snapshots[1:])

            seen = _check_events_seen_once(follower, d, home)
            accepted_before = set().union(*(s.accepted for s in snapshots))
            print(
                f"{len(seen)} events, {follower.connects} SSE connections, "
                f"{len(records)} simulator calls ({dict(purposes)} answered), "
                f"{len(accepted_before)} streams accepted "
                f"before a kill, {len(submitter.unknown)} submits unanswered, "
                f"{len(submitter.duplicates)} resubmits answered as duplicates, "
                f"{submitter.replayed} answered submits replayed after a restart"
            )
            assert submitter.replayed == KILLS  # each restart knew the keys from before
        finally:
            if follower is not None:
                follower.halt.set()
            for dp in daemons:
                if dp.proc is not None and dp.proc.poll() is None:
                    dp.stop(signal.SIGKILL)
