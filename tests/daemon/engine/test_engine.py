"""The engine end to end: a daemon process, litellm over real HTTP, the simulator's models."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from support.daemon import DaemonProcess, wait_for, write_config
from support.plans import stream
from support.simulator import running_simulator, stats, use_scenario

pytestmark = pytest.mark.slow

LIVE = {"completed", "failed", "canceled", "input_required", "awaiting_approval"}


SIX = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1},
    "plan": {
        "streams": [
            stream("a"),
            stream("b"),
            stream("c", ["a"]),
            stream("d", ["b"]),
            stream("e", ["c", "d"]),
            stream("f", ["a"]),
        ]
    },
    "streams": {
        "a": {"latency": 0.2},
        "b": {"latency": 1.5},
        "c": {"latency": 0.2},
        "d": {"latency": 0.2},
        "e": {"latency": 0.2},
        "f": {"latency": 0.3},
    },
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    home = tmp_path_factory.mktemp("home")
    with running_simulator(SIX) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            yield d, sim
        finally:
            d.stop()


def run(
    d: DaemonProcess, goal: str = "Write a short market note", timeout: float = 60.0, **options: Any
) -> dict[str, Any]:
    client = d.client()
    task_id = client.submit(goal, options=options)["task_id"]
    return wait_for(lambda: (t := client.get(task_id))["state"] in LIVE and t, timeout)


def streams_by_id(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in task["streams"]}


def test_six_streams_start_when_ready(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, SIX)
    task = run(d)
    assert task["state"] == "completed", task["error"]
    s = streams_by_id(task)
    assert set(s) == {"a", "b", "c", "d", "e", "f"}
    for sid, deps in {"c": ["a"], "d": ["b"], "e": ["c", "d"], "f": ["a"]}.items():
        for dep in deps:
            assert s[sid]["started_at"] >= s[dep]["ended_at"], (sid, dep)
    # No waves: c and f start as soon as a is done, while b (slow) is still running.
    assert s["c"]["started_at"] < s["b"]["ended_at"]
    assert s["f"]["started_at"] < s["b"]["ended_at"]
    # The first level started together.
    assert abs(s["a"]["started_at"] - s["b"]["started_at"]) < 0.5
    report = task["report"]
    assert report["time"]["sequential_s"] > report["time"]["execution_s"]
    assert [v["verdict"] for v in report["streams"]] == ["accept"] * 6
    assert task["result"]


def test_tokens_and_cost_recorded_per_role(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, SIX)
    task = run(d)
    usage = task["report"]["usage"]
    assert set(usage["per_role"]) == {"planner", "executor", "orchestrator"}
    for role in ("planner", "executor", "orchestrator"):
        assert usage["per_role"][role]["tokens"] > 0
        assert usage["per_role"][role]["cost_usd"] > 0
    assert usage["per_role"]["executor"]["calls"] == 6
    cost = task["report"]["cost"]
    assert cost["premium_only_usd"] > cost["total_usd"] > 0
    assert cost["tiering_saved_usd"] == pytest.approx(cost["premium_only_usd"] - cost["total_usd"])
    per_stream = {v["id"]: v["usage"] for v in task["report"]["streams"]}
    assert all(per_stream[sid]["tokens"] > 0 for sid in "abcdef")
    assert stats(sim.url)["answered_by_role"]["executor"] == 6


def test_invalid_plans_are_repaired(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(
        sim,
        {
            **SIX,
            "plan": {
                **SIX["plan"],
                "invalid_first": 2,
                "invalid": ["cycle", "overlapping_ownership"],
            },
        },
    )
    task = run(d)
    assert task["state"] == "completed", task["error"]
    plan_calls = [c for c in stats(sim.url)["calls"] if c["purpose"] == "plan"]
    assert len(plan_calls) == 3


def test_a_plan_that_never_validates_fails_with_the_reason(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, {**SIX, "plan": {**SIX["plan"], "invalid_first": 10, "invalid": ["cycle"]}})
    task = run(d)
    assert task["state"] == "failed"
    assert "no valid plan after 3 attempts" in task["error"]
    assert "cycle" in task["error"]
    assert task["report"]["state"] == "failed"


def test_redo_rounds_are_bounded_then_escalated(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    scenario = {
        **SIX,
        "plan": {"streams": [stream("a"), stream("b")]},
        "streams": {"b": {"review": ["redo"] * 10, "feedback": "Try again."}},
    }
    use_scenario(sim, scenario)
    task = run(d)
    assert task["state"] == "input_required"
    executes = [
        c for c in stats(sim.url)["calls"] if c["purpose"] == "execute" and c["stream_id"] == "b"
    ]
    assert len(executes) == 3  # round 0 plus review.max_rounds = 2 redos
    open_q = [q for q in task["questions"] if q["answer"] is None]
    assert len(open_q) == 1 and open_q[0]["stream_id"] == "b"
    assert "did not pass review" in open_q[0]["question"]
    assert streams_by_id(task)["a"]["state"] == "accepted"  # the sibling finished meanwhile
    d.client().cancel(task["id"])


def test_explicit_escalation_reaches_input_required(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    scenario = {
        **SIX,
        "plan": {"streams": [stream("a")]},
        "streams": {"a": {"review": ["escalate"], "escalate_question": "Is a discount allowed?"}},
    }
    use_scenario(sim, scenario)
    task = run(d)
    assert task["state"] == "input_required"
    assert [q["question"] for q in task["questions"]] == ["Is a discount allowed?"]
    client = d.client()
    client.answer(task["id"], {task["questions"][0]["id"]: "No discounts."})
    done = wait_for(
        lambda: (t := client.get(task["id"]))["state"] in LIVE - {"input_required"} and t, 60
    )
    assert done["state"] == "completed"


def test_transient_failures_are_retried(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(
        sim,
        {
            **SIX,
            "failures": [
                {"kind": "429", "role": "executor", "first": 2, "retry_after": 0.2},
                {"kind": "500", "role": "orchestrator", "first": 1},
            ],
        },
    )
    task = run(d)
    assert task["state"] == "completed", task["error"]
    statuses = [c["status"] for c in stats(sim.url)["calls"]]
    assert statuses.count(429) == 2 and statuses.count(500) >= 1


def test_a_stream_whose_model_always_fails_fails_the_task_with_a_partial_report(
    env: tuple[DaemonProcess, Any],
) -> None:
    d, sim = env
    use_scenario(
        sim,
        {
            **SIX,
            "plan": {"streams": [stream("a"), stream("b"), stream("c", ["b"])]},
            "failures": [{"kind": "500", "role": "executor", "stream": "b", "rate": 1.0}],
        },
    )
    task = run(d)
    assert task["state"] == "failed"
    assert "b" in task["error"]
    s = streams_by_id(task)
    assert s["a"]["state"] == "accepted" and s["a"]["output"]  # kept in the report
    assert s["b"]["state"] == "failed"
    assert s["c"]["state"] == "failed" and "dependency" in s["c"]["reason"]
    assert task["report"]["state"] == "failed"
    assert any(v["id"] == "a" and v["output"] for v in task["report"]["streams"])


def test_kill_9_mid_run_resumes_without_calling_finished_streams_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("crash")
    specs = [stream(f"s{i}") for i in range(1, 4)] + [
        stream("s4", ["s1"]),
        stream("s5", ["s2", "s3"]),
        stream("s6", ["s4", "s5"]),
    ]
    scenario = {
        "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.3},
        "plan": {"streams": specs},
        "streams": {"s3": {"latency": 3.0}, "s5": {"latency": 1.0}},
    }
    with running_simulator(scenario) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        client = d.client()
        task_id = client.submit("Crash-test the engine")["task_id"]
        # Kill once some streams are finished and others are still running.
        wait_for(
            lambda: sum(s["state"] == "accepted" for s in client.get(task_id)["streams"]) >= 2, 60
        )
        before = {s["id"]: s["state"] for s in client.get(task_id)["streams"]}
        client.close()
        d.stop(signal.SIGKILL)
        finished_before = {sid for sid, state in before.items() if state == "accepted"}
        assert finished_before and set(before) - finished_before

        d2 = DaemonProcess(home).start()
        client = d2.client()
        task = wait_for(lambda: (t := client.get(task_id))["state"] in LIVE and t, 60)
        assert task["state"] == "completed", task["error"]
        calls = stats(sim.url)["calls"]
        for sid in finished_before:
            answered = [
                c
                for c in calls
                if c["stream_id"] == sid
                and c["purpose"] == "execute"
                and c["status"] == 200
                and not c["disconnected"]
            ]
            assert len(answered) == 1, f"finished stream {sid} was called again"
        plans = [c for c in calls if c["purpose"] == "plan" and c["status"] == 200]
        assert len(plans) == 1
        assert {s["id"] for s in task["streams"]} == {f"s{i}" for i in range(1, 7)}
        client.close()
        d2.stop()
