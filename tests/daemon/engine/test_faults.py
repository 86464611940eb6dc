"""Provider faults end to end: a real daemon, litellm over loopback HTTP, a simulator that fails.

About a fifth of all calls fail with every kind a provider shows (429 with Retry-After, 500,
a dropped connection, a hang past the timeout, broken JSON, a body cut mid-answer, an empty
answer) and every task still completes; an answer that never parses fails the task with an
error naming the role, the model and the cause; a model nobody can reach fails its streams
with an error naming the model and the cause (never the key); a dead server's work moves to a
fallback on another server. Every wait in these tests is bounded, and so is every model call
in the daemon: the timeout kind hangs for 30 s, far longer than `timeout_s`.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CHEAP, PREMIUM
from support.daemon import DaemonProcess, wait_for
from support.simulator import running_simulator, stats, use_scenario

pytestmark = pytest.mark.slow

TERMINAL = {"completed", "failed", "canceled"}
KINDS = ("429", "500", "reset", "timeout", "malformed", "truncated", "empty")
#: Small, so a hang costs little; the simulator hangs 30 s, so only this bound ends it.
TIMEOUT_S = 2.5
KEY_ENV = "TIERD_FAULT_KEY"
PLANTED_KEY = "sk-planted-fault-key-4c0ffee"
FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}}
FOUR = {**FAST, "plan": {"generate": {"width": 4, "pattern": "independent"}}}


def dead_port() -> int:
    """A loopback port nobody listens on: bound, then closed (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_tiers(home: Path, tiers: dict[str, dict[str, Any]]) -> None:
    """config.toml with one [models.ROLE] table per role, from plain values."""
    lines = []
    for role, keys in tiers.items():
        lines.append(f"[models.{role}]")
        for key, value in keys.items():
            # JSON strings, lists of strings and numbers are valid TOML values.
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    lines += ["[concurrency]", "interval_ms = 100", ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


def tier(model: str, api_base: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": model,
        "api_base": api_base,
        "api_key_env": KEY_ENV,
        "timeout_s": TIMEOUT_S,
        "max_retries": 3,
        "fallbacks": [],
        **kw,
    }


def finish(d: DaemonProcess, task_ids: list[str], timeout: float = 90.0) -> list[dict[str, Any]]:
    with d.client() as client:

        def done() -> list[dict[str, Any]] | None:
            tasks = [client.get(t) for t in task_ids]
            return tasks if all(t["state"] in TERMINAL for t in tasks) else None

        return wait_for(done, timeout, interval=0.2)


def no_key_anywhere(home: Path, *texts: str) -> None:
    """The planted key is in no file under the daemon's home (database, WAL, logs, discovery)
    and in none of `texts` (API output, the daemon's own output)."""
    for text in texts:
        assert PLANTED_KEY not in text
    for path in home.rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    """One daemon for the module (its engine import is the slow part of a first task); each
    test points the executor where it needs with config/set, which the next task uses."""
    home = tmp_path_factory.mktemp("faults")
    with running_simulator(FOUR) as sim:
        write_tiers(
            home,
            {
                "orchestrator": tier(PREMIUM, sim.api_base, fallbacks=[CHEAP]),
                "planner": tier(PREMIUM, sim.api_base, fallbacks=[CHEAP]),
                "executor": tier(CHEAP, sim.api_base, fallbacks=[PREMIUM]),
            },
        )
        d = DaemonProcess(home, {KEY_ENV: PLANTED_KEY}).start()
        try:
            yield d, sim
        finally:
            d.stop()


def set_executor(d: DaemonProcess, **keys: Any) -> None:
    with d.client() as client:
        for key, value in keys.items():
            client.config_set(f"models.executor.{key}", value)


def fault_mix(rate: float) -> list[dict[str, Any]]:
    """Each kind once for certain (on calls of different purposes or streams, so no rule uses
    up another's "first" count), then each kind at `rate` on any call."""
    certain = [
        {"kind": "reset", "purpose": "plan", "first": 1},
        {"kind": "truncated", "stream": "s01", "purpose": "execute", "first": 1},
        {"kind": "500", "stream": "s02", "purpose": "execute", "first": 1, "status": 503},
        {"kind": "timeout", "stream": "s03", "purpose": "execute", "first": 1, "hang_s": 30},
        {"kind": "empty", "purpose": "review", "first": 1},
        {"kind": "malformed", "purpose": "conflicts", "first": 1},
        {"kind": "429", "purpose": "merge", "first": 1, "retry_after": 0.5},
    ]
    extra = {"429": {"retry_after": 0.2}, "timeout": {"hang_s": 30}}
    return certain + [{"kind": k, "rate": rate, **extra.get(k, {})} for k in KINDS]


def test_tasks_complete_when_a_fifth_of_all_calls_fail(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    # 1 - (1 - 0.032)^7: about 20% of calls fail, on top of the certain ones.
    use_scenario(sim, {**FOUR, "failures": fault_mix(0.032)})
    with d.client() as client:
        ids = [client.submit(f"Write market note {i}")["task_id"] for i in range(5)]
    tasks = finish(d, ids)
    for t in tasks:
        assert t["state"] == "completed", (t["id"], t["error"])
        assert {s["state"] for s in t["streams"]} == {"accepted"}
        for sid in ("s01", "s02", "s03", "s04"):
            assert f"Output of stream '{sid}'" in t["result"], t["result"]
    s = stats(sim.url)
    injected = Counter(c["injected"] for c in s["calls"] if c["injected"])
    assert set(injected) == set(KINDS), injected
    failed = sum(injected.values())
    assert failed >= len(KINDS) and failed / s["total"] > 0.1, (failed, s["total"])
    assert s["in_flight"] == 0  # every hang ended: the daemon gave up on it
    hung = [c for c in s["calls"] if c["injected"] == "timeout"]
    assert all(c["disconnected"] for c in hung)
    no_key_anywhere(d.home, str(tasks))


def test_a_conflict_check_that_never_parses_fails_the_task_clearly(
    env: tuple[DaemonProcess, Any],
) -> None:
    """The conflict check's answer is never valid JSON: the task fails with the role, the
    model and the cause (a `ModelOutputError` outside any stream), not an internal error."""
    d, sim = env
    broken = [{"kind": "malformed", "purpose": "conflicts", "rate": 1.0}]
    use_scenario(sim, {**FAST, "failures": broken})
    with d.client() as client:
        (task,) = finish(d, [client.submit("Write a short market note")["task_id"]])
    assert task["state"] == "failed"
    error = task["error"]
    assert error.startswith("orchestrator/conflicts: the answer of openai/gpt-5 never parsed")
    assert "ConflictReport" in error and "not valid JSON" in error
    assert "internal error" not in error
    assert {s["state"] for s in task["streams"]} == {"accepted"}  # the streams' work is kept
    assert task["report"]["state"] == "failed"
    conflicts = [c for c in stats(sim.url)["calls"] if c["purpose"] == "conflicts"]
    assert len(conflicts) == 3 and all(c["injected"] == "malformed" for c in conflicts)


def test_a_model_nobody_can_reach_fails_its_streams_clearly(env: tuple[DaemonProcess, Any]) -> None:
    d, sim = env
    use_scenario(sim, {**FAST, "plan": {"generate": {"width": 2, "pattern": "independent"}}})
    port = dead_port()
    set_executor(d, api_base=f"http://127.0.0.1:{port}/v1", fallbacks=[], max_retries=1)
    with d.client() as client:
        (task,) = finish(d, [client.submit("Write a short market note")["task_id"]])
    assert task["state"] == "failed"
    assert "s01" in task["error"] and "s02" in task["error"]
    for s in task["streams"]:
        assert s["state"] == "failed"
        # The model, the attempts and the cause: a refused connection to that port.
        assert CHEAP in s["reason"] and "2 attempts" in s["reason"], s["reason"]
        assert "Connect" in s["reason"] and str(port) in s["reason"], s["reason"]
    assert task["report"]["state"] == "failed"
    assert stats(sim.url)["by_purpose"].get("execute") is None  # none reached the simulator
    no_key_anywhere(d.home, str(task))


def test_a_dead_server_hands_its_work_to_a_fallback_elsewhere(
    env: tuple[DaemonProcess, Any],
) -> None:
    d, sim = env
    use_scenario(sim, FOUR)
    port = dead_port()
    set_executor(
        d,
        model="openai/gpt-5-nano",
        api_base=f"http://127.0.0.1:{port}/v1",
        max_retries=0,
        fallbacks=[f"{CHEAP}@{sim.api_base}"],
    )
    with d.client() as client:
        (task,) = finish(d, [client.submit("Write a short market note")["task_id"]])
    assert task["state"] == "completed", task["error"]
    executed = [c for c in stats(sim.url)["calls"] if c["purpose"] == "execute"]
    assert len(executed) == 4 and {c["model"] for c in executed} == {"gpt-5-mini"}
    calls = []
    # closing(): an abandoned event stream would hold the daemon's shutdown for its grace time.
    with (
        d.client() as client,
        contextlib.closing(client.events(task["id"], last_event_id=0, timeout=10)) as events,
    ):
        for event in events:
            if event.get("type") == "model.call" and event["data"]["role"] == "executor":
                calls.append((event["data"]["model"], event["data"]["outcome"]))
            if event.get("type") == "task.state" and event["data"]["state"] == "completed":
                break
    # Each stream: the dead primary once (no retries), then the fallback answers.
    assert Counter(calls) == {("openai/gpt-5-nano", "error"): 4, (CHEAP, "ok"): 4}
