"""Several daemons on one PostgreSQL store: leases, takeover, and what one daemon hears of the
other's tasks.

Two real daemons (two homes, one database on the test worker's PostgreSQL cluster), their
models on one simulator in this process, so that it outlives every kill and counts every call
(each call carries its task id and its step's memo key). Which daemon runs a task is read from
the store itself (`tasks.lease_owner`, named after the daemon-id file in each home): the API
does not show leases.

- daemon B shows (task/get, task/list, its live SSE stream) a task that daemon A runs;
- A SIGKILLed: B takes its task over once the lease expires, and no finished step runs again;
- A stopped with SIGTERM: its lease is handed back, B goes on long before it would expire;
- an answer, an approval or a cancel sent to B reaches the run in A;
- A started again after B took its task over leaves that task to B and runs new ones itself;
- a code task of A SIGKILLed in the middle of its stream's tool loop: B goes on in the worktree
  A left on this machine, no finished model call or command runs again, the user's repository
  is untouched, and B's clean-up at the task's end removes the adopted worktree too.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import connect_sse
from support.code_plans import COUNTING_CODER, HALF, code_stream
from support.daemon import DaemonProcess, task_of, wait_ended, wait_for, write_config
from support.git import run_git
from support.plans import stream
from support.postgres import PostgresCluster
from support.simulator import running_simulator, stats, use_scenario
from support.store_reader import query

from daemon.engine.checkpoints_pg import pg_conninfo

pytestmark = pytest.mark.slow

FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}
TWO = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b")]},
    "streams": {"a": {"latency": 0.3}, "b": {"latency": 0.6}},
}
#: The engine test's crash plan: s3 (3 s) and s5 (1 s) still run once s1 and s2 are accepted.
CRASH = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.3},
    "plan": {
        "streams": [
            stream("s1"),
            stream("s2"),
            stream("s3"),
            stream("s4", ["s1"]),
            stream("s5", ["s2", "s3"]),
            stream("s6", ["s4", "s5"]),
        ]
    },
    "streams": {"s3": {"latency": 3.0}, "s5": {"latency": 1.0}},
}
#: s1 is accepted quickly while s2 still runs for a while; s3 waits for both.
SLOW_SECOND = {
    "latency": FAST,
    "plan": {"streams": [stream("s1"), stream("s2"), stream("s3", ["s1", "s2"])]},
    "streams": {"s1": {"latency": 0.3}, "s2": {"latency": 5.0}},
}
QUESTION = "Which region should part a cover?"
ASKS = {
    "latency": FAST,
    "plan": {"streams": [stream("a")]},
    "streams": {"a": {"reply": "question", "question": QUESTION}},
}
#: a's model call takes long enough that a cancel always finds it in flight.
HANGS = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b", ["a"])]},
    "streams": {"a": {"latency": 12.0}},
}
#: A code task's one stream, each model answer 0.8 s: the kill comes after its first command.
CODER = COUNTING_CODER
CODE_TASK = {
    "latency": FAST,
    "plan": {"streams": [code_stream("impl", "other", ["src/**"])]},
    "streams": {"impl": {"latency": 0.8}},
    "code": {"streams": {"impl": CODER}},
}
CODE_CONFIG = "[code]\nallow_shell = true\n"
ENDED = {"completed", "failed", "canceled"}


# --- the daemons ---------------------------------------------------------------------------------


@dataclass
class Node:
    """One daemon of the pair: its home, its logs, and the process now running on it."""

    home: Path
    logs: Path
    d: DaemonProcess = field(init=False)

    def start(self) -> DaemonProcess:
        self.d = DaemonProcess(self.home, logs=self.logs).start()
        return self.d

    @property
    def name(self) -> str:
        """What this daemon writes as a lease's owner: `<host>/<the id kept in its home>`."""
        return (self.home / "daemon-id").read_text().strip()

    def owns(self, owner: str | None) -> bool:
        return owner is not None and owner.endswith("/" + self.name)

    def log(self) -> str:
        return (self.logs / "daemon.err").read_text(errors="replace")

    def alive(self) -> bool:
        return self.d.proc is not None and self.d.proc.poll() is None


@dataclass
class Pair:
    a: Node
    b: Node
    db: str
    sim: Any

    def lease(self, task_id: str) -> tuple[str | None, float | None]:
        """The task's lease as the store holds it: owner, and seconds left (None: no lease)."""
        with psycopg.connect(pg_conninfo(self.db)) as conn:
            row = conn.execute(
                "SELECT lease_owner, lease_expires_at - EXTRACT(EPOCH FROM clock_timestamp()) "
                "FROM tasks WHERE id = %s",
                (task_id,),
            ).fetchone()
        assert row is not None, f"no task {task_id} in the store"
        return row[0], None if row[1] is None else float(row[1])

    def ended(self, d: DaemonProcess, task_id: str, timeout: float) -> dict[str, Any]:
        """The task once `d` says it ended; on timeout, a failure saying where it stands."""
        try:
            return wait_ended(d, task_id, timeout=timeout)
        except AssertionError:
            state = task_of(d, task_id)["state"]
            owner, left = self.lease(task_id)
            raise AssertionError(
                f"task {task_id} still {state} after {timeout}s; lease: {owner} "
                f"(a: {self.a.name}, b: {self.b.name}), {left} s left"
            ) from None

    def taken_by(self, node: Node, task_id: str, timeout: float) -> None:
        """Wait until `node` holds the task's lease."""
        try:
            wait_for(lambda: node.owns(self.lease(task_id)[0]), timeout=timeout, interval=0.1)
        except AssertionError:
            owner, left = self.lease(task_id)
            raise AssertionError(
                f"{node.name} did not take task {task_id} within {timeout:.0f}s; "
                f"lease: {owner}, {left} s left"
            ) from None

    def calls(self, task_id: str) -> list[dict[str, Any]]:
        return [c for c in stats(self.sim.url)["calls"] if c["task_id"] == task_id]

    def stop(self) -> None:
        for node in (self.a, self.b):
            if hasattr(node, "d") and node.alive():
                node.d.stop()


def start_pair(
    root: Path, sim: Any, cluster: PostgresCluster, lease_s: float, extra: str = ""
) -> Pair:
    """Two daemons, each with a home of its own, on a new database of `cluster`; `extra`:
    more lines of both configs (a `[code]` table, say)."""
    db = cluster.new_database()
    nodes = []
    for name in ("a", "b"):
        home, logs = root / f"home-{name}", root / f"logs-{name}"
        home.mkdir(parents=True)
        logs.mkdir()
        write_config(home, sim.url, f'[store]\nurl = "{db}"\nlease_s = {lease_s}\n{extra}')
        nodes.append(Node(home, logs))
    pair = Pair(nodes[0], nodes[1], db, sim)
    try:
        pair.a.start()
        pair.b.start()
    except BaseException:
        pair.stop()
        raise
    assert pair.a.name != pair.b.name
    return pair


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(TWO) as s:
        yield s


@pytest.fixture(scope="module")
def pair(
    sim: Any, postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two daemons that stay up for the whole module. Their leases (10 s) never lapse while
    they run, even on a loaded machine: these tests are about tasks that stay in A."""
    p = start_pair(tmp_path_factory.mktemp("pair"), sim, postgres_cluster, lease_s=10)
    yield p
    p.stop()


@pytest.fixture
def new_pair(
    sim: Any, postgres_cluster: PostgresCluster, tmp_path: Path
) -> Iterator[Callable[..., Pair]]:
    """Two daemons of the test's own (it kills or stops them), with leases of `lease_s`
    (and `extra` config lines)."""
    made: list[Pair] = []

    def make(lease_s: float, extra: str = "") -> Pair:
        root = tmp_path / f"pair{len(made)}"
        made.append(start_pair(root, sim, postgres_cluster, lease_s, extra))
        return made[-1]

    yield make
    for p in made:
        p.stop()


# --- helpers -------------------------------------------------------------------------------------


def submit(d: DaemonProcess, goal: str = "Write a short market note", **options: Any) -> str:
    reply = d.rpc("task/submit", {"goal": goal, "options": options})
    assert "result" in reply, reply
    return str(reply["result"]["task_id"])


def wait_state(d: DaemonProcess, task_id: str, states: set[str], timeout: float = 30.0) -> Any:
    return wait_for(lambda: (t := task_of(d, task_id))["state"] in states and t, timeout, 0.1)


def accepted(task: dict[str, Any]) -> set[str]:
    return {s["id"] for s in task["streams"] if s["state"] == "accepted"}


def answered(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls the simulator answered to a client that was still there to read it."""
    return [c for c in calls if c["status"] == 200 and not c["disconnected"]]


def assert_no_finished_stream_ran_again(calls: list[dict[str, Any]], finished: set[str]) -> None:
    """Each stream accepted before the daemon went away was executed and reviewed once, and
    the task was planned once: the daemon that went on used the memo in the store."""
    done = answered(calls)
    for sid in finished:
        for purpose in ("execute", "review"):
            got = [c for c in done if c["stream_id"] == sid and c["purpose"] == purpose]
            assert len(got) == 1, f"finished stream {sid}: {purpose} answered {len(got)} times"
    assert len([c for c in done if c["purpose"] == "plan"]) == 1, "the task was planned again"
    steps = [c["step"] for c in done if c["step"]]
    assert steps, "the daemon sent no X-Tierd-Step memo keys"


def started_lines(node: Node, task_id: str, since: int = 0) -> list[str]:
    """The lines of the node's log (from character `since`) where it started the task."""
    return [ln for ln in node.log()[since:].splitlines() if f"task {task_id}: started" in ln]


def ran_only_in(node: Node, other: Node, task_id: str) -> bool:
    """The task's run started in `node` and never in `other` (a lease is handed back once
    its run ends, so the logs say where it ran)."""
    return bool(started_lines(node, task_id)) and not started_lines(other, task_id)


# --- 1. what B shows of A's task -----------------------------------------------------------------


def test_b_shows_and_streams_a_task_that_runs_in_a(pair: Pair) -> None:
    use_scenario(pair.sim, TWO)
    a, b = pair.a.d, pair.b.d
    task_id = submit(a)
    assert task_of(b, task_id)["state"] not in ENDED  # B sees it live, at once

    # B's live stream of the task, from its first event, read in a thread up to its end.
    seen: list[dict[str, Any]] = []
    received: list[float] = []
    errors: list[BaseException] = []

    def follow() -> None:
        headers = {"Authorization": f"Bearer {b.token}"}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as http,
                connect_sse(
                    http, "GET", f"{b.url}/v1/tasks/{task_id}/events", headers=headers
                ) as source,
            ):
                source.response.raise_for_status()
                for sse in source.iter_sse():
                    if not sse.data:
                        continue
                    ev = json.loads(sse.data)
                    seen.append(ev)
                    received.append(time.time())
                    if ev["type"] == "task.state" and ev["data"]["state"] in ENDED:
                        return
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    # B answers task/get from the shared store while A runs it (and after it ended).
    done = pair.ended(b, task_id, timeout=40)
    assert done["state"] == "completed", done["error"]
    reader.join(15)
    assert not reader.is_alive(), "B's event stream did not reach the task's final state"
    assert not errors, errors
    assert ran_only_in(pair.a, pair.b, task_id)
    # Its run over, A handed the lease back (another daemon may delete the task now).
    wait_for(lambda: pair.lease(task_id)[0] is None, timeout=10, interval=0.1)

    in_a = task_of(a, task_id)
    assert done["result"] == in_a["result"] and done["result"]
    assert {s["id"]: s["state"] for s in done["streams"]} == {"a": "accepted", "b": "accepted"}
    listed = b.rpc("task/list", {"limit": 50})["result"]["tasks"]
    assert [t["state"] for t in listed if t["id"] == task_id] == ["completed"]

    # Every event of the task (as A stored it, replayed by A), once each and in order, up to
    # its final state: nothing lost, nothing doubled between the stored ones and the live ones.
    with a.client() as client:
        stored = list(client.events(task_id, follow=False, timeout=10))
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)), "B's stream repeated or reordered events"
    assert seen == stored[: len(seen)]
    assert seen[-1]["data"]["state"] == "completed"
    # The stream was live, not a replay of an ended task: its first event came before the
    # task ended in A. And each later event came as A wrote it (B reads the others' events
    # every 0.25 s), not at the stream's next idle re-read (after 15 s).
    assert received[0] < seen[-1]["created_at"] and len(seen) > 5
    late = [
        (e["type"], round(at - e["created_at"], 1))
        for e, at in zip(seen, received, strict=True)
        if e["created_at"] > received[0] and at - e["created_at"] > 5
    ]
    assert not late, f"events reached B's stream late: {late}"


def test_a_task_still_finishing_in_a_is_not_deleted_through_b(pair: Pair) -> None:
    """An ended task whose run still holds its lease in A (writing its last checkpoint,
    cleaning up) is refused by B's delete, naming A; once the lease is A's no more (handed
    back, or expired if A died), B deletes it."""
    use_scenario(pair.sim, TWO)
    task_id = submit(pair.a.d)
    assert pair.ended(pair.b.d, task_id, timeout=40)["state"] == "completed"
    wait_for(lambda: pair.lease(task_id)[0] is None, timeout=10, interval=0.1)
    owner = f"{socket.gethostname()}/{pair.a.name}"

    def set_lease(seconds: float) -> None:
        with psycopg.connect(pg_conninfo(pair.db)) as conn:
            conn.execute(
                "UPDATE tasks SET lease_owner = %s, "
                "lease_expires_at = EXTRACT(EPOCH FROM clock_timestamp()) + %s WHERE id = %s",
                (owner, seconds, task_id),
            )

    set_lease(30)  # as while A's run finishes
    refused = pair.b.d.rpc("task/delete", {"task_id": task_id})
    assert refused["error"]["code"] == -32002, refused
    assert "still finishing in another daemon" in refused["error"]["message"]
    assert refused["error"]["data"]["daemon"] == owner
    assert task_of(pair.b.d, task_id)["state"] == "completed"  # nothing was deleted
    set_lease(-1)  # A died after the end: its lease ran out
    deleted = pair.b.d.rpc("task/delete", {"task_id": task_id})
    assert deleted["result"]["task_id"] == task_id, deleted
    assert pair.b.d.rpc("task/get", {"task_id": task_id})["error"]["code"] == -32001


# --- 2. SIGKILL: B takes the task over once the lease expires -----------------------------------


def test_a_task_of_a_killed_daemon_is_finished_by_the_other_without_repeating_steps(
    new_pair: Callable[[float], Pair],
) -> None:
    p = new_pair(3)
    use_scenario(p.sim, CRASH)
    task_id = submit(p.a.d, "Crash-test the shared store")
    client = p.a.d.client()
    wait_for(lambda: len(accepted(client.get(task_id))) >= 2, 60, 0.05)
    before = client.get(task_id)
    client.close()
    p.a.d.kill()
    killed_at = time.time()
    finished = accepted(before)
    assert finished and {s["id"] for s in before["streams"]} - finished
    assert p.a.owns(p.lease(task_id)[0])

    # B's keeper takes it once the lease has expired (3 s after A's last renewal at most)
    # and looks every second.
    p.taken_by(p.b, task_id, timeout=15)
    taken = time.time() - killed_at
    done = p.ended(p.b.d, task_id, timeout=45)
    assert done["state"] == "completed", done["error"]
    assert {s["id"] for s in done["streams"]} == {f"s{i}" for i in range(1, 7)}
    assert started_lines(p.b, task_id), "B never started it, yet A is dead"
    assert started_lines(p.b, task_id), "B's log does not show it starting the task"
    calls = p.calls(task_id)
    assert_no_finished_stream_ran_again(calls, finished)
    print(f"B took the task {taken:.1f}s after the kill, ended it {time.time() - killed_at:.1f}s")


def submit_slow_second(p: Pair) -> tuple[str, set[str]]:
    """A SLOW_SECOND task submitted to A, once s1 is accepted (s2 still runs for a while): its
    id and the streams accepted by then."""
    use_scenario(p.sim, SLOW_SECOND)
    task_id = submit(p.a.d)
    task = wait_for(lambda: "s1" in accepted(t := task_of(p.a.d, task_id)) and t, 30, 0.05)
    return task_id, accepted(task)


# --- 3. SIGTERM: the lease is handed back, B goes on at once -------------------------------------


def test_a_daemon_stopped_gracefully_hands_its_task_over_before_its_lease_expires(
    new_pair: Callable[[float], Pair],
) -> None:
    p = new_pair(30)
    task_id, finished = submit_slow_second(p)
    owner, left = p.lease(task_id)
    assert p.a.owns(owner) and left is not None and left > 18  # renewed every 10 s

    assert p.a.d.stop(signal.SIGTERM) == 0
    stopped_at = time.monotonic()
    owner, _ = p.lease(task_id)
    assert owner is None or p.b.owns(owner), f"A still holds the lease after its stop: {owner}"
    # B's keeper looks every 10 s; A's lease would have lasted `left` more seconds.
    p.taken_by(p.b, task_id, timeout=left - 4)
    claimed = time.monotonic() - stopped_at
    assert claimed < left - 4
    done = p.ended(p.b.d, task_id, timeout=30)
    assert done["state"] == "completed", done["error"]
    assert_no_finished_stream_ran_again(p.calls(task_id), finished)
    print(f"B claimed the task {claimed:.1f}s after A's stop (A's lease had {left:.0f}s left)")


# --- 4. an answer and a decision sent to B reach the run in A ------------------------------------


def test_a_question_of_a_task_in_a_answered_through_b_resumes_it_in_a(pair: Pair) -> None:
    use_scenario(pair.sim, ASKS)
    a, b = pair.a.d, pair.b.d
    task_id = submit(a)
    task = wait_state(b, task_id, {"input_required"} | ENDED)
    assert task["state"] == "input_required"
    (question,) = task["questions"]
    assert question["question"] == QUESTION
    reply = b.rpc("task/answer", {"task_id": task_id, "answers": {question["id"]: "EMEA"}})
    assert "result" in reply, reply
    answered_at = time.monotonic()
    # A's run wakes on B's task.answered event: well before its own 30 s recheck of the store.
    done = pair.ended(b, task_id, timeout=15)
    assert done["state"] == "completed", done["error"]
    assert ran_only_in(pair.a, pair.b, task_id)
    assert not started_lines(pair.b, task_id), "B ran the task instead of waking A's run"
    assert [q["answer"] for q in task_of(a, task_id)["questions"]] == ["EMEA"]
    print(f"completed {time.monotonic() - answered_at:.1f}s after B took the answer")


def test_a_result_of_a_task_in_a_approved_through_b_completes_in_a(pair: Pair) -> None:
    use_scenario(pair.sim, TWO)
    a, b = pair.a.d, pair.b.d
    task_id = submit(a, approval="required")
    task = wait_state(b, task_id, {"awaiting_approval"} | ENDED)
    assert task["state"] == "awaiting_approval" and task["result"]
    reply = b.rpc("task/approve", {"task_id": task_id, "decision": "approve"})
    assert reply.get("result", {}).get("decision") == "approve", reply
    done = pair.ended(b, task_id, timeout=15)
    assert done["state"] == "completed", done["error"]
    assert done["result"] == task["result"]
    assert ran_only_in(pair.a, pair.b, task_id)
    assert not started_lines(pair.b, task_id), "B ran the task instead of waking A's run"


# --- 5. a cancel sent to B stops the run in A ----------------------------------------------------


def test_a_cancel_through_b_ends_the_task_and_stops_its_run_in_a(pair: Pair) -> None:
    use_scenario(pair.sim, HANGS)
    a, b = pair.a.d, pair.b.d
    task_id = submit(a)

    def a_in_flight() -> list[dict[str, Any]]:
        return [
            c
            for c in pair.calls(task_id)
            if c["purpose"] == "execute" and c["stream_id"] == "a" and c["status"] is None
        ]

    wait_for(a_in_flight, 30, 0.05)
    reply = b.rpc("task/cancel", {"task_id": task_id})
    assert reply.get("result", {}).get("state") == "canceled", reply
    canceled_at = time.monotonic()
    assert task_of(a, task_id)["state"] == "canceled"
    # A hears the cancel and stops the run: its model call in flight is closed, long before
    # the 12 s the simulator takes to answer it.
    wait_for(lambda: not a_in_flight(), timeout=5, interval=0.1)
    calls = pair.calls(task_id)
    (execute,) = [c for c in calls if c["purpose"] == "execute"]
    assert execute["disconnected"], execute
    assert time.monotonic() - canceled_at < 5
    time.sleep(1.5)
    assert pair.calls(task_id) == calls, "A went on calling models for the canceled task"
    status = a.rpc("daemon/status")["result"]
    assert status["concurrency"]["in_flight"] == 0
    assert pair.a.alive() and task_of(a, task_id)["state"] == "canceled"
    assert task_of(b, task_id)["state"] == "canceled"


# --- 6. A started again leaves B's task to B, and runs new ones itself ---------------------------


def test_a_restarted_daemon_leaves_the_taken_over_task_alone_and_runs_new_ones(
    new_pair: Callable[[float], Pair],
) -> None:
    # 6 s: B renews every 2 s, so a loaded machine (CI runs three test files at once) never
    # lets B's lease lapse while it runs the task, which would rightly hand it back to A.
    p = new_pair(6)
    task_id, finished = submit_slow_second(p)
    p.a.d.kill()
    p.taken_by(p.b, task_id, timeout=15)
    assert task_of(p.b.d, task_id)["state"] not in ENDED

    since = len(p.a.log())
    a2 = p.a.start()  # the same home, so the same daemon name
    done = p.ended(a2, task_id, timeout=40)
    assert done["state"] == "completed", done["error"]
    # A's keeper looked several times (every second) while B still ran the task.
    assert started_lines(p.b, task_id)
    assert not started_lines(p.a, task_id, since), "the restarted A started B's task"
    calls = p.calls(task_id)
    assert_no_finished_stream_ran_again(calls, finished)
    steps = [c["step"] for c in answered(calls)]
    assert len(steps) == len(set(steps)), f"a step was answered twice: {sorted(steps)}"

    use_scenario(p.sim, TWO)
    new_id = submit(a2)
    assert p.ended(a2, new_id, timeout=30)["state"] == "completed"
    assert ran_only_in(p.a, p.b, new_id)
    assert started_lines(p.a, new_id, since)
    assert not started_lines(p.b, new_id)


# --- 7. a code task: B goes on in the worktree A left on this machine -----------------------


def make_repo(root: Path) -> Path:
    """A user's repository with work in progress: a staged and an unstaged edit, an
    untracked file."""
    (root / "src").mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src" / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    (root / "README.md").write_text("# Demo\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    (root / "README.md").write_text("# Demo\nuser edit in progress\n")
    (root / "src" / "app.py").write_text("def greet(name):\n    return 'hi ' + name\n")
    run_git(root, "add", "src/app.py")
    (root / "notes.txt").write_text("untracked\n")
    return root


def repo_state(repo: Path) -> dict[str, bytes]:
    """The working tree's files, the index, HEAD and what `git status` says."""
    state = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    state[".git/index"] = (repo / ".git" / "index").read_bytes()
    state["HEAD"] = run_git(repo, "rev-parse", "HEAD").encode()
    state["status"] = run_git(repo, "status", "--porcelain", "--untracked-files=all").encode()
    return state


def test_a_code_task_of_a_killed_daemon_goes_on_in_its_worktree_in_the_other(
    new_pair: Callable[..., Pair], tmp_path: Path
) -> None:
    if shutil.which("bwrap") is None:  # FAIL, never skip (as the code tests)
        pytest.fail("bubblewrap is not installed (no 'bwrap' on PATH): apt-get install bubblewrap")
    repo = make_repo(tmp_path.resolve() / "user-repo")
    base = run_git(repo, "rev-parse", "HEAD").strip()
    before = repo_state(repo)
    p = new_pair(3, CODE_CONFIG)
    use_scenario(p.sim, CODE_TASK)
    reply = p.a.d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo)})
    task_id = str(reply["result"]["task_id"])

    # SIGKILL once the stream's first command was recorded (step 2 of 6), while its next
    # model answer (0.8 s) is on its way.
    def code() -> dict[str, Any]:
        streams = task_of(p.a.d, task_id)["streams"]
        return dict((streams or [{}])[0].get("code") or {})

    wait_for(lambda: code().get("commands"), timeout=60, interval=0.05)
    p.a.d.kill()
    killed_at = time.time()
    assert p.a.owns(p.lease(task_id)[0])
    # Where A stood, as the store holds it: the steps saved (never to be asked again) and
    # the stream's record (one command run, the loop not finished).
    saved = {
        str(k) for (k,) in query(p.a.home, "SELECT key FROM steps WHERE task_id = ?", [task_id])
    }
    (row,) = query(p.a.home, "SELECT state, code_json FROM streams WHERE task_id = ?", [task_id])
    at_kill = json.loads(row[1])
    assert row[0] != "accepted" and at_kill["ended"] is None, row
    assert [c["command"] for c in at_kill["commands"]] == ["echo one >> src/count.txt"]
    assert "tool:code:impl:r0:s1:0" in saved and "tool:code:impl:r0:s5:0" not in saved
    a_worktree = Path(at_kill["worktree"])
    assert a_worktree.is_relative_to(p.a.home) and (a_worktree / "src" / "feature.py").exists()

    p.taken_by(p.b, task_id, timeout=15)
    done = p.ended(p.b.d, task_id, timeout=45)
    assert done["state"] == "completed", done["error"]
    ended_after = time.time() - killed_at
    assert started_lines(p.b, task_id)
    (impl,) = done["streams"]
    assert impl["state"] == "accepted" and impl["code"]["steps"] == len(CODER)
    # B worked in the worktree A made (adopted), not in one of its own.
    assert impl["code"]["worktree"] == str(a_worktree)

    # The result holds the edits of both daemons: A's file (written, uncommitted, before the
    # kill) as B's edit left it, and B's own file; each command ran once.
    result = done["code"]["result"]["branch"]
    assert result == f"tierd/{task_id}/_result"

    def show(path: str) -> str:
        return run_git(repo, "show", f"{result}:{path}")

    assert show("src/feature.py") == HALF.replace("x // 2", "x // 2  # halved")
    assert show("src/more.py") == "MORE = 1\n"
    assert show("src/count.txt") == "one\ntwo\n"
    changed = run_git(repo, "diff", "--name-only", base, result).split()
    assert sorted(changed) == ["src/count.txt", "src/feature.py", "src/more.py"]
    assert [(c["command"], c["exit_code"]) for c in impl["code"]["commands"]] == [
        ("echo one >> src/count.txt", 0),
        ("echo two >> src/count.txt", 0),
    ]
    # One tool.step event per tool call that ran (a call read back from the memo has none).
    rows = query(
        p.b.home,
        "SELECT data_json FROM events WHERE task_id = ? AND type = 'tool.step' ORDER BY id",
        [task_id],
    )
    steps = [json.loads(d) for (d,) in rows]
    assert [(s["step"], s["tool"]) for s in steps] == [
        (i + 1, t["tool"]) for i, t in enumerate(CODER)
    ]

    # No model call of a saved step ran again; only a call in flight at the kill (its
    # answer not saved) may have been answered twice.
    answered_steps = Counter(c["step"] for c in answered(p.calls(task_id)) if c["step"])
    assert {f"code:impl:r0:s{i}" for i in range(len(CODER))} <= set(answered_steps)
    again = {k: n for k, n in answered_steps.items() if n > 1}
    assert not set(again) & saved, f"saved steps asked again: {again}"
    assert all(answered_steps[k] == 1 for k in saved if k in answered_steps)

    # The user's repository is as it was, and B's worktrees root holds nothing of the task.
    assert repo_state(repo) == before
    assert not list((p.b.home / "worktrees").glob(f"{task_id}*"))

    def worktrees() -> set[Path]:
        out = run_git(repo, "worktree", "list", "--porcelain").splitlines()
        return {Path(ln.removeprefix("worktree ")) for ln in out if ln.startswith("worktree ")}

    def branches() -> set[str]:
        return set(
            run_git(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split()
        )

    def clean() -> bool:
        """Only the result's branch is left: no worktree, no directory in either root."""
        roots = [node.home / "worktrees" for node in (p.a, p.b)]
        return (
            worktrees() == {repo}
            and branches() == {result}
            and not [d for r in roots for d in r.glob(f"{task_id}*")]
        )

    # B removed the worktree it adopted too (it is laid out as tierd's, on the task's branch),
    # so the stream's branch went with it: only the result is left, without A starting again.
    cleanup = task_of(p.b.d, task_id)["code"]["cleanup"]
    assert not cleanup["branches_left"], cleanup
    wait_for(clean, timeout=15, interval=0.1)
    assert repo_state(repo) == before
    print(
        f"B ended the code task {ended_after:.1f}s after the kill; "
        f"steps saved at the kill: {len(saved)}, answered again: {again}"
    )
