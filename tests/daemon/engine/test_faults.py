"""Provider faults end to end: a real daemon, litellm over loopback HTTP, a simulator that fails.

About a fifth of all calls fail with every kind a provider shows (429 with Retry-After, 500,
a dropped connection, a hang past the timeout, broken JSON, a body cut mid-answer, an empty
answer) and every task still completes; an answer that never parses fails the task with an
error naming the role, the model and the cause; a model nobody can reach fails its streams
with an error naming the model and the cause (never the key); a dead server's work moves to a
fallback on another server, and nothing from the daemon's environment (an OpenAI
organisation, project or custom header) goes with it, nor to the primary server the config
names. The daemon logs each failed model call with its role, model, attempt and cause (never
the key). Every wait in these tests is bounded, and so is every model call in the daemon: the
timeout kind hangs for 30 s, far longer than `timeout_s`. The simulator injects faults at the
rate it is given: checked over thousands of calls, within a band sound for their number.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import CHEAP, PREMIUM
from support.daemon import DaemonProcess, wait_for
from support.simulator import running_simulator, stats, use_scenario

from daemon.tools.simulator.server import SimulatorThread

pytestmark = pytest.mark.slow

TERMINAL = {"completed", "failed", "canceled"}
KINDS = ("429", "500", "reset", "timeout", "malformed", "truncated", "empty")
#: Repair requests per unparsable answer in these tiers (the default is 2, see `tier`).
MAX_REPAIRS = 4
#: Small, so a hang costs little; the simulator hangs 30 s, so only this bound ends it.
TIMEOUT_S = 2.5
KEY_ENV = "TIERD_FAULT_KEY"
PLANTED_KEY = "sk-planted-fault-key-4c0ffee"
FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}}
FOUR = {**FAST, "plan": {"generate": {"width": 4, "pattern": "independent"}}}
#: Settings for OpenAI in the daemon's environment: they belong to OpenAI's own endpoint, and
#: no tier here uses it, so none of them may reach any server.
OPENAI_SETTINGS = {
    "OPENAI_ORGANIZATION": "org-planted-in-the-daemon-env",
    "OPENAI_ORG_ID": "org-planted-org-id",
    "OPENAI_PROJECT": "proj-planted-in-the-daemon-env",
    "OPENAI_PROJECT_ID": "proj-planted-project-id",
    "OPENAI_CUSTOM_HEADERS": "X-Planted-Header: planted-header-value",
}
#: Header names that would carry any of OPENAI_SETTINGS.
LEAKY_HEADERS = {"openai-organization", "openai-project", "x-planted-header"}


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
        # A parse fault hits ~6% of calls here (malformed, or a stream cut short): with the
        # default 2 repairs, three in a row on one of a run's ~40 structured calls fails a task
        # about once in a hundred runs. Four repairs make that about 1 in 10^5.
        "max_repairs": MAX_REPAIRS,
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


@dataclass
class Seen:
    """The headers of every model call a simulator received."""

    requests: list[dict[str, str]] = field(default_factory=list)

    def leaks(self) -> list[str]:
        """Planted settings (or headers that carry them) in any recorded request."""
        found = []
        for headers in self.requests:
            found += [name for name in headers if name in LEAKY_HEADERS]
            found += [v for v in OPENAI_SETTINGS.values() if v in str(headers)]
        return found


class HeaderRecorder:
    """ASGI middleware in front of a simulator: records the headers of every model call."""

    def __init__(self, app: Any, seen: Seen) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.requests.append(headers)
        await self.app(scope, receive, send)


def recording(scenario: dict[str, Any]) -> tuple[SimulatorThread, Seen]:
    sim = SimulatorThread(scenario)
    seen = Seen()
    sim.app.add_middleware(HeaderRecorder, seen=seen)
    return sim, seen


@dataclass
class Env:
    """The module's daemon, its simulator, a second simulator "elsewhere" (another server, for
    fallbacks), what each was sent, and where the daemon's output goes."""

    d: DaemonProcess
    sim: SimulatorThread
    elsewhere: SimulatorThread
    seen: Seen
    seen_elsewhere: Seen
    logs: Path

    def __iter__(self) -> Iterator[Any]:  # `d, sim = env`, as the tests have always done
        return iter((self.d, self.sim))

    def log(self) -> str:
        return (self.logs / "daemon.err").read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One daemon for the module (its engine import is the slow part of a first task); each
    test points the executor where it needs with config/set, which the next task uses."""
    home = tmp_path_factory.mktemp("faults")
    logs = tmp_path_factory.mktemp("fault-logs")
    sim, seen = recording(FOUR)
    elsewhere, seen_elsewhere = recording(FAST)
    with sim, elsewhere:
        write_tiers(
            home,
            {
                "orchestrator": tier(PREMIUM, sim.api_base, fallbacks=[CHEAP]),
                "planner": tier(PREMIUM, sim.api_base, fallbacks=[CHEAP]),
                "executor": tier(CHEAP, sim.api_base, fallbacks=[PREMIUM]),
            },
        )
        daemon_env = {KEY_ENV: PLANTED_KEY, **OPENAI_SETTINGS}
        d = DaemonProcess(home, daemon_env, logs=logs).start()
        try:
            yield Env(d, sim, elsewhere, seen, seen_elsewhere, logs)
        finally:
            d.stop()


def set_executor(d: DaemonProcess, **keys: Any) -> None:
    with d.client() as client:
        for key, value in keys.items():
            client.config_set(f"models.executor.{key}", value)


#: How many standard deviations a fault count may stray from its expectation: a sound test
#: fails by chance about once in 16,000 runs at 4 (two-sided, normal approximation).
Z = 4.0


def rate_band(n: int, p: float) -> tuple[float, float]:
    """The fractions of n independent calls, each failing with probability p, that a correct
    injector produces but by a 1-in-16,000 chance: p +/- Z standard errors."""
    half = Z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def combined_rate(rate: float, rules: int) -> float:
    """The chance that at least one of `rules` independent rules at `rate` fires on a call."""
    return 1 - (1 - rate) ** rules


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


def test_tasks_complete_when_a_fifth_of_all_calls_fail(env: Env) -> None:
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
    # The certain faults fired once each; every other call failed with the mix's rate: the
    # fraction lies in the band a correct injector gives for this many calls.
    certain = len(fault_mix(0.0)) - len(KINDS)
    random_faults, calls = sum(injected.values()) - certain, s["total"] - certain
    low, high = rate_band(calls, combined_rate(0.032, len(KINDS)))
    assert low <= random_faults / calls <= high, (random_faults, calls, low, high)
    assert s["in_flight"] == 0  # every hang ended: the daemon gave up on it
    hung = [c for c in s["calls"] if c["injected"] == "timeout"]
    assert all(c["disconnected"] for c in hung)
    no_key_anywhere(d.home, str(tasks))


def test_a_conflict_check_that_never_parses_fails_the_task_clearly(
    env: Env,
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
    # The first answer, then each repair request.
    assert len(conflicts) == 1 + MAX_REPAIRS
    assert all(c["injected"] == "malformed" for c in conflicts)
    assert f"after {MAX_REPAIRS} repair request(s)" in error


def test_a_model_nobody_can_reach_fails_its_streams_clearly(env: Env) -> None:
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
    env: Env,
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


def test_the_simulator_fails_calls_at_the_configured_rate() -> None:
    """The rate the fault tests rely on is the rate the simulator injects: over 2,000 calls
    (each with its own identity, so its own draw) the failures fall in the band a correct
    injector gives; a fifth configured as a tenth, or as 0.3, falls far outside it."""
    kinds = ("500", "empty", "malformed")
    rate = 0.072  # three rules: 1 - 0.928^3, about a fifth of all calls
    scenario = {
        "latency": {"planner": 0.0, "orchestrator": 0.0, "executor": 0.0},
        "failures": [{"kind": k, "rate": rate} for k in kinds],
    }
    n = 2000
    with running_simulator(scenario) as sim, httpx.Client(base_url=sim.url, timeout=30) as h:
        for i in range(n):
            h.post(
                "/v1/chat/completions",
                headers={
                    "X-Tierd-Role": "executor",
                    "X-Tierd-Purpose": "execute",
                    "X-Tierd-Task": f"rate-{i}",
                    "X-Tierd-Stream": "s01",
                },
                json={"model": CHEAP, "messages": [{"role": "user", "content": "Do it."}]},
            )
        injected = Counter(c["injected"] for c in stats(sim.url)["calls"] if c["injected"])
    assert set(injected) == set(kinds), injected
    low, high = rate_band(n, combined_rate(rate, len(kinds)))
    assert low <= sum(injected.values()) / n <= high, (injected, low, high)
    assert not low <= 0.1 <= high and not low <= 0.3 <= high  # the band can tell them apart


def test_nothing_from_the_daemons_environment_reaches_a_configured_server_or_a_fallback(
    env: Env,
) -> None:
    """OPENAI_ORGANIZATION and friends are set in the daemon's environment. The executor's
    primary (a server the config names) fails every call, and a fallback on another server
    does the work: neither, nor the premium tier's server, is sent any of them."""
    d, sim = env
    use_scenario(sim, {**FOUR, "fail_models": ["openai/gpt-5-nano"]})
    use_scenario(env.elsewhere, FAST)
    env.seen.requests.clear()
    env.seen_elsewhere.requests.clear()
    set_executor(
        d,
        model="openai/gpt-5-nano",
        api_base=sim.api_base,
        max_retries=0,
        fallbacks=[f"{CHEAP}@{env.elsewhere.api_base}"],
    )
    with d.client() as client:
        (task,) = finish(d, [client.submit("Write a short market note")["task_id"]])
    assert task["state"] == "completed", task["error"]
    executed = [c for c in stats(env.elsewhere.url)["calls"] if c["purpose"] == "execute"]
    assert len(executed) == 4  # the fallback did the work: the search below is not vacuous
    assert env.seen.requests and env.seen_elsewhere.requests
    assert env.seen.leaks() == [], env.seen.leaks()[:5]
    assert env.seen_elsewhere.leaks() == [], env.seen_elsewhere.leaks()[:5]
    # The tier's key went to its own server, never to the fallback's.
    assert PLANTED_KEY not in json.dumps(env.seen_elsewhere.requests)
    assert f"Bearer {PLANTED_KEY}" in json.dumps(env.seen.requests)


def test_the_daemon_logs_each_failed_model_call_without_the_key(env: Env) -> None:
    """The daemon's own log (not only uvicorn's lines) tells of every failed model call: its
    role, purpose, task, stream, model, attempt and cause. The key, which every call to the
    simulator carried, is in no line."""
    d, sim = env
    use_scenario(sim, {**FOUR, "failures": [{"kind": "500", "purpose": "execute", "first": 1}]})
    set_executor(d, model=CHEAP, api_base=sim.api_base, max_retries=3, fallbacks=[])
    with d.client() as client:
        (task,) = finish(d, [client.submit("Write a short market note")["task_id"]])
    assert task["state"] == "completed", task["error"]
    (failed,) = [c for c in stats(sim.url)["calls"] if c["injected"]]
    log = wait_for(lambda: (text := env.log()) and f"task={task['id']}" in text and text, 10)
    lines = [line for line in log.splitlines() if f"task={task['id']}" in line]
    assert len(lines) == 1, lines
    (line,) = lines
    assert "model call failed" in line
    for part in (
        "role=executor",
        "purpose=execute",
        f"stream={failed['stream_id']}",
        f"model={CHEAP}",
        "attempt=1",
        "InternalServerError",
        "simulated server error",
        "retrying in",
    ):
        assert part in line, (part, line)
    assert PLANTED_KEY not in log
    # Every fault of the earlier tests is in the log too, and the key is in none of it.
    assert log.count("model call failed") > 10
    assert PLANTED_KEY not in (env.logs / "daemon.out").read_text(encoding="utf-8")
