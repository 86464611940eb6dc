"""Supervision end to end: questions, the approval gate, cancellation, background work,
attention events and the notification hook.

A real daemon subprocess, litellm over real HTTP, the simulator in a thread of this process.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import CHEAP, PREMIUM, ROOT
from support.daemon import DaemonProcess, wait_for
from support.plans import stream
from support.simulator import running_simulator, stats

pytestmark = pytest.mark.slow

WAITING = {"input_required", "awaiting_approval"}
SETTLED = WAITING | {"completed", "failed", "canceled"}
SECRET_ENV = "TIERD_SUPERVISION_KEY"
SECRET = "sk-supervision-test-secret"


FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}
Q_A, Q_B = "Which region should part a cover?", "Which currency should part b use?"
#: a and b ask a question at once; c works on for a while before it finishes.
QUESTIONS = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b"), stream("c")]},
    "streams": {
        "a": {"reply": "question", "question": Q_A},
        "b": {"reply": "question", "question": Q_B},
        "c": {"latency": 1.2},
    },
}
TWO = {"latency": FAST, "plan": {"streams": [stream("a"), stream("b")]}}
#: b hangs on its model call; c waits for b.
SLOW_B = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b"), stream("c", ["b"])]},
    "streams": {"b": {"latency": 60.0}},
}


def write_home_config(home: Path, sim_url: str, notify: Path | None = None) -> None:
    """All roles on the simulator, with a (meaningless) API key read from the environment,
    so the test can prove that the notification hook never sees it."""
    lines = []
    for role, model in (("orchestrator", PREMIUM), ("planner", PREMIUM), ("executor", CHEAP)):
        lines += [
            f"[models.{role}]",
            f'model = "{model}"',
            f'api_base = "{sim_url}/v1"',
            f'api_key_env = "{SECRET_ENV}"',
            "timeout_s = 90.0",
            "max_retries = 0",
            "",
        ]
    lines += ["[concurrency]", "interval_ms = 100", "", "[review]", "max_revisions = 1", ""]
    if notify is not None:
        lines += ["[notify]", f"command = {json.dumps(str(notify))}", ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


def write_notify_script(path: Path, log: Path) -> None:
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}) + '\\n')\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


class Env:
    def __init__(self, daemon: DaemonProcess, sim: Any, notify_log: Path) -> None:
        self.d = daemon
        self.sim = sim
        self.notify_log = notify_log

    def use(self, scenario: dict[str, Any]) -> None:
        httpx.post(f"{self.sim.url}/_sim/scenario", json=scenario, timeout=10).raise_for_status()

    def restart(self, sig: signal.Signals, answer: tuple[str, str] | None = None) -> DaemonProcess:
        """Stop the daemon with `sig`, optionally answer a question in its store while it
        is down, and start it again on the same home."""
        self.d.stop(sig)
        if answer is not None:
            with sqlite3.connect(self.d.home / "tierd.db") as db:
                db.execute(
                    "UPDATE questions SET answer = ?, answered_at = ? WHERE id = ?",
                    (answer[1], time.time(), answer[0]),
                )
        self.d = DaemonProcess(self.d.home, {SECRET_ENV: SECRET}).start()
        return self.d

    def notifications(self, task_id: str) -> list[dict[str, Any]]:
        if not self.notify_log.exists():
            return []
        lines = self.notify_log.read_text(encoding="utf-8").splitlines()
        return [n for n in map(json.loads, lines) if n["argv"][0] == task_id]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("home")
    notify_script = home / "notify-hook"
    notify_log = home / "notified.jsonl"
    write_notify_script(notify_script, notify_log)
    with running_simulator(TWO) as sim:
        write_home_config(home, sim.url, notify_script)
        env_ = Env(DaemonProcess(home, {SECRET_ENV: SECRET}).start(), sim, notify_log)
        try:
            yield env_
        finally:
            env_.d.stop()  # the one running now: the restart test replaces it


# --- helpers --------------------------------------------------------------------------------


def submit(d: DaemonProcess, goal: str = "Write a short market note", **options: Any) -> str:
    return d.rpc("task/submit", {"goal": goal, "options": options})["result"]["task_id"]


def get(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    return d.rpc("task/get", {"task_id": task_id})["result"]


def wait_state(
    d: DaemonProcess, task_id: str, states: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    return wait_for(lambda: (t := get(d, task_id))["state"] in states and t, timeout)


def events_of(
    d: DaemonProcess, task_id: str, until: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Every stored event of a task, replayed over SSE, up to the one `until` matches (by
    default the task.state event of its current state) and whatever follows at once."""
    if until is None:
        state = get(d, task_id)["state"]

        def until(e: dict[str, Any]) -> bool:
            return e["type"] == "task.state" and e["data"]["state"] == state

    out: list[dict[str, Any]] = []
    seen = False
    headers = {"Authorization": f"Bearer {d.token}"}
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=d.url, headers=headers, timeout=httpx.Timeout(10.0, read=0.5)) as h:
        while time.monotonic() < deadline:
            after = out[-1]["id"] if out else 0
            try:
                with h.stream("GET", f"/v1/tasks/{task_id}/events", params={"after": after}) as r:
                    assert r.status_code == 200
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            out.append(json.loads(line[5:].strip()))
                            seen = seen or until(out[-1])
                # Closed by the daemon: a finished task's stream ends once replayed.
                if seen:
                    return out
            except httpx.ReadTimeout:  # idle: everything stored so far was sent
                if seen:
                    return out
    raise AssertionError(f"the expected event of task {task_id} never came")


def of_type(events: list[dict[str, Any]], type_: str, **data: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
    ]


def executes(sim: Any, stream_id: str) -> list[dict[str, Any]]:
    return [
        c
        for c in stats(sim.url)["calls"]
        if c["purpose"] == "execute" and c["stream_id"] == stream_id
    ]


def rest(d: DaemonProcess, path: str, body: Any = None) -> httpx.Response:
    with d.http() as h:
        return h.post(path, json=body)


def record_prompts(sim: Any, purpose: str) -> list[str]:
    """Keep the prompt of every `purpose` call the simulator answers (from now on)."""
    answerer = sim.sim.answerer
    seen: list[str] = []
    original = type(answerer).answer

    def answer(call: Any) -> str:
        if call.purpose == purpose:
            seen.append(call.prompt)
        return original(answerer, call)

    answerer.answer = answer
    return seen


def assert_invalid_state(reply: dict[str, Any], state: str | None = None) -> None:
    assert reply["error"]["code"] == -32002, reply
    if state is not None:
        assert reply["error"]["data"]["state"] == state


# --- questions ------------------------------------------------------------------------------


def test_questions_are_batched_and_an_answer_resumes_only_the_askers(env: Env) -> None:
    d, sim = env.d, env.sim
    env.use(QUESTIONS)
    task_id = submit(d)

    # Both questions are asked while c still works: the task keeps running meanwhile.
    def states(t: dict[str, Any]) -> dict[str, str]:
        return {s["id"]: s["state"] for s in t["streams"]}

    asked = wait_for(
        lambda: states(t := get(d, task_id)).get("a") == states(t).get("b") == "waiting" and t, 60
    )
    assert asked["state"] == "running", asked["state"]
    assert len(asked["questions"]) == 2 and states(asked)["c"] == "running"

    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "input_required"
    by_stream = {q["stream_id"]: q for q in task["questions"]}
    assert {s: q["question"] for s, q in by_stream.items()} == {"a": Q_A, "b": Q_B}
    assert all(q["id"] and q["answer"] is None for q in task["questions"])
    assert {s["id"]: s["state"] for s in task["streams"]}["c"] == "accepted"

    events = events_of(d, task_id)
    (waiting,) = of_type(events, "task.state", state="input_required")
    (c_done,) = of_type(events, "stream.state", stream_id="c", state="accepted")
    assert c_done["id"] < waiting["id"]  # input_required only once c had finished
    (att,) = of_type(events, "attention", kind="questions")
    assert {(q["id"], q["stream_id"]) for q in att["data"]["questions"]} == {
        (q["id"], q["stream_id"]) for q in task["questions"]
    }
    assert Q_A in att["data"]["reason"] and Q_B in att["data"]["reason"]

    answered = d.rpc(
        "task/answer",
        {
            "task_id": task_id,
            "answers": {by_stream["a"]["id"]: "EMEA", by_stream["b"]["id"]: "EUR"},
        },
    )["result"]
    assert sorted(answered["answered"]) == sorted(q["id"] for q in task["questions"])
    # The task leaves input_required with the answer itself, not some time later.
    assert get(d, task_id)["state"] != "input_required"
    done = wait_state(d, task_id, SETTLED)
    assert done["state"] == "completed", done["error"]
    assert len(executes(sim, "c")) == 1  # never called again
    for sid in ("a", "b"):
        assert [c["status"] for c in executes(sim, sid)] == [200, 200]  # asked, then did it

    # The notification hook ran for the questions, with the task id and the reason, and
    # without the model key in its environment.
    notified = wait_for(lambda: env.notifications(task_id), 10)
    assert notified[0]["argv"][0] == task_id and Q_A in notified[0]["argv"][1]
    assert SECRET_ENV not in notified[0]["env"]
    assert SECRET not in json.dumps(notified[0])


def test_a_partial_answer_resumes_one_stream_and_the_task_waits_again(env: Env) -> None:
    d, sim = env.d, env.sim
    env.use(QUESTIONS)
    task_id = submit(d)
    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "input_required"
    by_stream = {q["stream_id"]: q["id"] for q in task["questions"]}
    d.rpc("task/answer", {"task_id": task_id, "answers": {by_stream["a"]: "EMEA"}})
    wait_for(
        lambda: {s["id"]: s["state"] for s in get(d, task_id)["streams"]}["a"] == "accepted", 20
    )
    again = wait_state(d, task_id, SETTLED)
    assert again["state"] == "input_required"
    assert [q["id"] for q in again["questions"] if q["answer"] is None] == [by_stream["b"]]
    assert len(executes(sim, "b")) == 1  # b still waits: not called again
    attentions = of_type(events_of(d, task_id), "attention", kind="questions")
    assert [len(a["data"]["questions"]) for a in attentions] == [2, 1]
    # A question answered twice is a state error; an unknown id is a parameter error.
    twice = d.rpc("task/answer", {"task_id": task_id, "answers": {by_stream["a"]: "x"}})
    assert_invalid_state(twice)
    unknown = d.rpc("task/answer", {"task_id": task_id, "answers": {"q-nope": "x"}})
    assert unknown["error"]["code"] == -32602
    r = rest(d, f"/v1/tasks/{task_id}/answer", {"answers": {by_stream["b"]: "EUR"}})
    assert r.status_code == 200, r.text
    assert wait_state(d, task_id, SETTLED)["state"] == "completed"


# --- approval -------------------------------------------------------------------------------


def test_reject_revises_with_the_comment_then_approve_completes(env: Env) -> None:
    d, sim = env.d, env.sim
    # A slower merge, so that the second decision below lands while the revision runs.
    env.use({**TWO, "purpose_latency": {"merge": 0.6}})
    merges = record_prompts(sim, "merge")
    task_id = submit(d, approval="required")
    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "awaiting_approval"
    assert task["result"]  # the human sees what they are asked to approve
    assert len(merges) == 1

    comment = "Too long: cut it to three bullet points, please."
    rejected = d.rpc(
        "task/approve", {"task_id": task_id, "decision": "reject", "comment": comment}
    )["result"]
    assert rejected == {"task_id": task_id, "decision": "reject", "applied": None}
    # The rejection is acted on at once: no second decision on the same result.
    assert get(d, task_id)["state"] == "merging"
    assert_invalid_state(d.rpc("task/approve", {"task_id": task_id, "decision": "approve"}))

    revised = wait_state(d, task_id, SETTLED)
    assert revised["state"] == "awaiting_approval"
    assert len(merges) == 2
    assert comment in merges[1] and comment not in merges[0]
    assert task["result"] in merges[1]  # the rejected result goes back with the comment

    r = rest(d, f"/v1/tasks/{task_id}/approve", {"decision": "approve"})
    assert r.status_code == 200, r.text
    done = wait_state(d, task_id, {"completed", "failed", "canceled"})
    assert done["state"] == "completed"
    assert len(merges) == 2
    events = events_of(d, task_id)
    assert [e["data"]["decision"] for e in of_type(events, "task.decision")] == [
        "reject",
        "approve",
    ]
    assert [e["data"]["revision"] for e in of_type(events, "attention", kind="approval")] == [0, 1]
    hooks = wait_for(lambda: len(n := env.notifications(task_id)) == 2 and n, 10)
    assert [h["argv"][1] for h in hooks] == [
        "result awaits approval",
        "result awaits approval (revision 1)",
    ]
    # Approving a completed task is a state error.
    late = rest(d, f"/v1/tasks/{task_id}/approve", {"decision": "approve"})
    assert late.status_code == 409 and "not awaiting_approval" in late.json()["error"]["message"]


def test_rejections_beyond_max_revisions_fail_the_task_with_the_reason(env: Env) -> None:
    d = env.d
    env.use(TWO)
    task_id = submit(d, approval="required")
    assert wait_state(d, task_id, SETTLED)["state"] == "awaiting_approval"
    for attempt in range(2):  # review.max_revisions = 1 in this daemon's config
        wait_state(d, task_id, {"awaiting_approval"})
        d.rpc(
            "task/approve",
            {"task_id": task_id, "decision": "reject", "comment": f"No, attempt {attempt}."},
        )
    failed = wait_state(d, task_id, {"completed", "failed", "canceled"})
    assert failed["state"] == "failed"
    assert "rejected 2 times" in failed["error"] and "review.max_revisions" in failed["error"]
    assert "No, attempt 1." in failed["error"]
    assert failed["report"]["state"] == "failed"
    (att,) = of_type(events_of(d, task_id), "attention", kind="failed")
    assert "rejected 2 times" in att["data"]["reason"]


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_mid_call_closes_the_request_and_releases_the_slots(env: Env) -> None:
    d, sim = env.d, env.sim
    env.use(SLOW_B)
    task_id = submit(d)
    wait_for(
        lambda: {s["id"]: s["state"] for s in get(d, task_id)["streams"]}.get("a") == "accepted", 20
    )
    wait_for(lambda: any(c["status"] is None for c in executes(sim, "b")), 20)
    status = d.rpc("daemon/status")["result"]["concurrency"]
    assert status["in_flight"] >= 1
    # Nothing to answer or approve while it runs: a state error, not a parameter error.
    assert_invalid_state(
        d.rpc("task/answer", {"task_id": task_id, "answers": {"q1": "x"}}), "running"
    )
    assert_invalid_state(
        d.rpc("task/approve", {"task_id": task_id, "decision": "approve"}), "running"
    )
    assert rest(d, f"/v1/tasks/{task_id}/approve", {"decision": "approve"}).status_code == 409

    started = time.monotonic()
    out = d.rpc("task/cancel", {"task_id": task_id})["result"]
    assert out == {"task_id": task_id, "state": "canceled"}
    assert time.monotonic() - started < 5  # at once, not after the 60 s call
    assert d.rpc("daemon/status")["result"]["concurrency"]["in_flight"] == 0
    (b_call,) = wait_for(lambda: (c := executes(sim, "b")) and c[0]["status"] and c, 10)
    assert b_call["disconnected"] is True and b_call["status"] == 499
    assert executes(sim, "c") == []  # waited for b: never started

    task = get(d, task_id)
    assert task["state"] == "canceled" and task["report"]["state"] == "canceled"
    states = {s["id"]: s["state"] for s in task["streams"]}
    assert states == {"a": "accepted", "b": "canceled", "c": "canceled"}
    kept = {s["id"]: s for s in task["report"]["streams"]}
    assert kept["a"]["output"]  # the partial output is kept in the report

    again = d.rpc("task/cancel", {"task_id": task_id})
    assert_invalid_state(again, "canceled")
    assert "already canceled" in again["error"]["message"]
    assert rest(d, f"/v1/tasks/{task_id}/cancel").status_code == 409
    assert_invalid_state(d.rpc("task/answer", {"task_id": task_id, "answers": {"q": "x"}}))
    assert_invalid_state(d.rpc("task/approve", {"task_id": task_id, "decision": "reject"}))


def test_cancel_while_waiting_for_a_human(env: Env) -> None:
    d = env.d
    env.use(QUESTIONS)
    task_id = submit(d)
    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "input_required"
    r = rest(d, f"/v1/tasks/{task_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "canceled"
    states = {s["id"]: s["state"] for s in get(d, task_id)["streams"]}
    assert states == {"a": "canceled", "b": "canceled", "c": "accepted"}
    qid = task["questions"][0]["id"]
    late = rest(d, f"/v1/tasks/{task_id}/answer", {"answers": {qid: "EMEA"}})
    assert late.status_code == 409 and late.json()["error"]["code"] == -32002
    assert_invalid_state(
        d.rpc("task/answer", {"task_id": task_id, "answers": {qid: "x"}}), "canceled"
    )

    # And in awaiting_approval: no decision is taken after a cancel.
    env.use(TWO)
    task_id = submit(d, approval="required")
    assert wait_state(d, task_id, SETTLED)["state"] == "awaiting_approval"
    assert d.rpc("task/cancel", {"task_id": task_id})["result"]["state"] == "canceled"
    late = rest(d, f"/v1/tasks/{task_id}/approve", {"decision": "approve"})
    assert late.status_code == 409
    assert d.rpc("daemon/status")["result"]["concurrency"]["in_flight"] == 0


def test_wrong_state_on_a_finished_task(env: Env) -> None:
    d = env.d
    env.use(TWO)
    task_id = submit(d)
    assert wait_state(d, task_id, SETTLED)["state"] == "completed"
    for method, params in (
        ("task/cancel", {}),
        ("task/answer", {"answers": {"q": "x"}}),
        ("task/approve", {"decision": "approve"}),
    ):
        assert_invalid_state(d.rpc(method, {"task_id": task_id, **params}), "completed")
    for path, body in (
        ("cancel", None),
        ("answer", {"answers": {"q": "x"}}),
        ("approve", {"decision": "reject", "comment": "late"}),
    ):
        r = rest(d, f"/v1/tasks/{task_id}/{path}", body)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["error"]["code"] == -32002
    assert get(d, task_id)["state"] == "completed"


# --- background by design -------------------------------------------------------------------


def test_clients_that_go_away_change_nothing(env: Env) -> None:
    d = env.d
    env.use({**TWO, "streams": {"a": {"latency": 0.6}, "b": {"latency": 0.6}}})
    host, port = d.url.removeprefix("http://").rsplit(":", 1)

    # 1. An HTTP client that sends a request and goes away before the answer.
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "task/submit",
            "params": {"goal": "Submitted by a client that left"},
        }
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Authorization: Bearer " + d.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    left = wait_for(
        lambda: [
            t
            for t in d.rpc("task/list")["result"]["tasks"]
            if t["goal"] == "Submitted by a client that left"
        ],
        10,
    )[0]

    # 2. An event stream closed mid-task.
    task_id = submit(d, goal="Watched, then not")
    headers = {"Authorization": f"Bearer {d.token}"}
    with (
        httpx.Client(base_url=d.url, headers=headers, timeout=10) as h,
        h.stream("GET", f"/v1/tasks/{task_id}/events") as r,
    ):
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data:")
            if seen >= 2:
                break  # leave mid-stream

    # 3. The CLI following a task, interrupted with Ctrl-C.
    cli = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "submit", "Watched by the CLI", "--watch"],
        cwd=ROOT,
        env={**d.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stderr is not None
    line = cli.stderr.readline()
    assert line.startswith("submitted "), line
    cli_task = line.split()[1]
    wait_state(d, cli_task, {"planning", "running"} | SETTLED)
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=20)
    assert "the task goes on in the daemon" in err

    for tid in (left["id"], task_id, cli_task):
        done = wait_state(d, tid, {"completed", "failed", "canceled"})
        assert done["state"] == "completed", (tid, done["error"])


# --- attention ------------------------------------------------------------------------------


def test_a_failure_asks_for_attention_and_runs_the_hook(env: Env) -> None:
    d = env.d
    env.use({**TWO, "plan": {**TWO["plan"], "invalid_first": 10, "invalid": ["cycle"]}})
    task_id = submit(d)
    task = wait_state(d, task_id, {"completed", "failed", "canceled"})
    assert task["state"] == "failed"
    (att,) = of_type(events_of(d, task_id), "attention", kind="failed")
    assert att["data"]["reason"].startswith("task failed: no valid plan")
    (hook,) = wait_for(lambda: env.notifications(task_id), 10)
    assert hook["argv"] == [task_id, att["data"]["reason"][:500]]


def test_a_broken_hook_is_logged_and_harmless(tmp_path: Path) -> None:
    """The hook runs in the background: a missing program or one that hangs changes nothing
    (unit-level, on the Notifier itself)."""
    import asyncio

    from daemon.engine.notify import Notifier, clean_env, command_argv

    log = tmp_path / "argv"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n', encoding="utf-8")
    hook.chmod(0o755)
    assert command_argv(f"{hook} --urgent") == [str(hook), "--urgent"]
    assert command_argv("") == [] and command_argv("'unclosed") == []
    env_ = clean_env(
        {"PATH": "/bin", "OPENAI_API_KEY": "k", "MY_VAR": "v", "GH_TOKEN": "t"}, ["MY_VAR"]
    )
    assert env_ == {"PATH": "/bin"}

    async def main() -> float:
        n = Notifier(timeout_s=0.5)
        started = time.monotonic()
        assert n.notify("", "t1", "off") is None
        missing = n.notify("/nonexistent/hook", "t1", "reason")
        hangs = n.notify(["sleep", "30"], "t1", "reason")
        ok = n.notify(f"{hook} --urgent", "t1", "needs you; $(touch /tmp/x)")
        elapsed = time.monotonic() - started  # notify() itself never waits
        assert missing and hangs and ok
        await asyncio.gather(missing, hangs, ok)
        await n.aclose()
        return elapsed

    assert asyncio.run(main()) < 0.2
    assert log.read_text().splitlines() == ["--urgent", "t1", "needs you; $(touch /tmp/x)"]


def test_a_question_from_a_sub_stream_still_reaches_the_human(env: Env) -> None:
    """A stream that split waits on its sub-streams: one of them asking is enough for the
    task to wait for the human once nothing else can progress."""
    d = env.d
    subs = [
        {
            "id": x,
            "title": f"Part {x}",
            "job": f"Do {x}.",
            "output_definition": f"{x}.",
            "ownership": [f"area-a/{x}/"],
        }
        for x in ("x", "y")
    ]
    env.use(
        {
            "latency": FAST,
            "plan": {"streams": [stream("a"), stream("b")]},
            "streams": {
                "a": {"reply": "split", "split": subs},
                "a.x": {"reply": "question", "question": "Which x?"},
            },
        }
    )
    task_id = submit(d)
    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "input_required"
    ((qid, sid),) = [(q["id"], q["stream_id"]) for q in task["questions"]]
    assert sid == "a.x"
    d.rpc("task/answer", {"task_id": task_id, "answers": {qid: "This x."}})
    done = wait_state(d, task_id, SETTLED)
    assert done["state"] == "completed", done["error"]


# --- restarts (last: they restart the module's daemon) -------------------------------------


def test_a_restart_while_waiting_for_a_human_loses_nothing(env: Env) -> None:
    """SIGTERM: tasks resume into the same waits (input_required, awaiting_approval) and
    take the answer and the decision. SIGKILL, with an answer given while the daemon is
    down: the answered stream goes on by itself, the revised result still waits."""
    sim = env.sim
    d = env.d
    # A second task waits for approval across the same restarts.
    env.use(TWO)
    gated = submit(d, approval="required")
    assert wait_state(d, gated, SETTLED)["state"] == "awaiting_approval"
    env.use(QUESTIONS)
    task_id = submit(d)
    task = wait_state(d, task_id, SETTLED)
    assert task["state"] == "input_required"
    by_stream = {q["stream_id"]: q["id"] for q in task["questions"]}

    def waits(stream_id: str) -> int:
        return len(
            of_type(events_of(env.d, task_id), "stream.state", stream_id=stream_id, state="waiting")
        )

    d = env.restart(signal.SIGTERM)
    # Resumed into the same wait (each stream replays its question from the memo): the
    # same questions, no new wait announced, nobody asked twice.
    wait_for(lambda: waits("a") == 2 and waits("b") == 2, 60)
    resumed = get(d, task_id)
    assert resumed["state"] == "input_required"
    assert {q["stream_id"]: q["id"] for q in resumed["questions"]} == by_stream
    events = events_of(d, task_id)
    assert len(of_type(events, "task.state", state="input_required")) == 1
    assert len(of_type(events, "attention", kind="questions")) == 1
    # The gated task waits for the same decision and takes it.
    assert get(d, gated)["state"] == "awaiting_approval"
    assert len(of_type(events_of(d, gated), "attention", kind="approval")) == 1
    r = rest(d, f"/v1/tasks/{gated}/approve", {"decision": "reject", "comment": "Shorter."})
    assert r.status_code == 200, r.text
    revised = wait_for(lambda: (t := get(d, gated))["state"] == "awaiting_approval" and t, 60)
    assert len(of_type(events_of(d, gated), "attention", kind="approval")) == 2

    # Answered while the daemon is down (straight into its store): picked up at the start.
    d = env.restart(signal.SIGKILL, answer=(by_stream["a"], "EMEA"))
    wait_for(
        lambda: {s["id"]: s["state"] for s in get(d, task_id)["streams"]}["a"] == "accepted", 60
    )
    left = wait_state(d, task_id, SETTLED)
    assert left["state"] == "input_required"
    assert [q["id"] for q in left["questions"] if q["answer"] is None] == [by_stream["b"]]
    r = rest(d, f"/v1/tasks/{task_id}/answer", {"answers": {by_stream["b"]: "EUR"}})
    assert r.status_code == 200, r.text

    done = wait_state(d, task_id, SETTLED)
    assert done["state"] == "completed", done["error"]
    assert len(done["questions"]) == 2  # nothing asked twice
    # The revised result still waits after the kill, as revision 1, and takes the approval.
    assert get(d, gated)["state"] == "awaiting_approval"
    assert get(d, gated)["result"] == revised["result"]
    assert len(of_type(events_of(d, gated), "attention", kind="approval")) == 2
    assert d.rpc("task/approve", {"task_id": gated, "decision": "approve"})["result"]
    # An approval is recorded at once; the task stays awaiting_approval until its run (woken
    # by the decision) completes it: wait for a final state, not for any settled one.
    assert wait_state(d, gated, SETTLED - WAITING)["state"] == "completed"
    assert [e["data"]["revision"] for e in of_type(events_of(d, gated), "task.decision")] == [0, 1]
    for sid in ("a", "b"):
        answered = [c for c in executes(sim, sid) if c["status"] == 200]
        assert len(answered) == 2, f"{sid}: the question was asked again"
    assert len([c for c in executes(sim, "c") if c["status"] == 200]) == 1
