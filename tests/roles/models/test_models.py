"""`call_model` against the simulator over real HTTP with the real litellm client: retries,
Retry-After, fallbacks, timeouts, structured output and repair, cost, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import litellm
import pytest
from support import CHEAP, KEY_ENV, PREMIUM
from support.simulator import calls, running_simulator, stats

from roles.models.gateway import (
    ModelCallError,
    ModelConfigError,
    ModelOutputError,
    ModelTier,
    UsageRecord,
    call_model,
    extract_json,
    premium_cost,
)
from roles.plan.schema import ConflictReport, ExecutorReply, Plan, Review

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}
SECRET = "sk-sim-secret-value-123"
MESSAGES = [
    {"role": "system", "content": "You are a test."},
    {"role": "user", "content": "Do the thing."},
]


@pytest.fixture(autouse=True)
def sim_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def tier(sim: Any, model: str = PREMIUM, **kw: Any) -> ModelTier:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("backoff_s", 0.01)
    return ModelTier(model=model, api_base=sim.api_base, api_key_env=KEY_ENV, **kw)


class Recorder:
    """An async on_record, as the workflow passes (it writes to the store)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    async def __call__(self, record: UsageRecord) -> None:
        await asyncio.sleep(0)
        self.records.append(record)


# --- tiers ------------------------------------------------------------------------------------


def test_tier_from_config() -> None:
    t = ModelTier.from_config(
        {
            "model": "openai/gpt-5-mini",
            "api_base": "",
            "api_key_env": "",
            "fallbacks": ["openai/gpt-5"],
            "timeout_s": 20,
            "max_retries": 2,
        }
    )
    assert t == ModelTier("openai/gpt-5-mini", None, None, ["openai/gpt-5"], 20.0, 2)
    assert ModelTier.from_config({"model": "gpt-5"}).max_retries == 3


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "models.executor.model is required"),
        ({"model": 5}, "models.executor.model must be"),
        ({"model": "m", "timeout_s": 0}, "models.executor.timeout_s"),
        ({"model": "m", "timeout_s": "fast"}, "models.executor.timeout_s"),
        ({"model": "m", "max_retries": 1.5}, "models.executor.max_retries must be an integer"),
        ({"model": "m", "max_retries": -1}, "models.executor.max_retries"),
        ({"model": "m", "fallbacks": "gpt-5"}, "models.executor.fallbacks"),
        ({"model": "m", "temperature": 1}, "unknown key models.executor.temperature"),
    ],
)
def test_tier_config_errors_name_the_key(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ModelConfigError, match=needle.replace(".", r"\.")):
        ModelTier.from_config(data, where="models.executor.")


async def test_missing_key_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with running_simulator(FAST) as sim, pytest.raises(ModelConfigError, match=KEY_ENV):
        await call_model(tier(sim), MESSAGES, role="orchestrator", purpose="merge", task_id="t1")


def test_premium_cost_from_the_price_table() -> None:
    premium = premium_cost(1000, 1000, PREMIUM)
    p, c = litellm.cost_per_token(model=PREMIUM, prompt_tokens=1000, completion_tokens=1000)
    assert premium == pytest.approx(p + c) and premium > 0
    assert premium_cost(1000, 1000, CHEAP) < premium
    # A price litellm does not know is unknown, never $0; no tokens cost nothing anywhere.
    assert premium_cost(1000, 1000, "openai/not-a-real-model-xyz") is None
    assert premium_cost(0, 0, PREMIUM) == 0.0
    assert premium_cost(0, 0, "openai/not-a-real-model-xyz") == 0.0


# --- calls ------------------------------------------------------------------------------------


async def test_plain_call_records_usage_cost_and_sends_headers() -> None:
    rec = Recorder()
    with running_simulator(FAST) as sim:
        result = await call_model(
            tier(sim),
            MESSAGES,
            role="orchestrator",
            purpose="merge",
            task_id="t1",
            round=2,
            on_record=rec,
        )
        sent = stats(sim.url)["calls"]
    assert result.text.startswith("# Result") and result.parsed is None
    assert rec.records == [result.record]
    r = result.record
    assert (r.task_id, r.stream_id, r.role, r.purpose, r.model, r.round) == (
        "t1",
        None,
        "orchestrator",
        "merge",
        PREMIUM,
        2,
    )
    assert r.outcome == "ok" and r.attempts == 1 and r.error is None
    assert r.prompt_tokens == sent[0]["prompt_tokens"] > 0
    assert r.completion_tokens == sent[0]["completion_tokens"] > 0
    assert (
        r.cost_usd == pytest.approx(premium_cost(r.prompt_tokens, r.completion_tokens, PREMIUM))
        and r.cost_usd > 0
    )
    assert r.ended_at >= r.started_at and r.latency_s > 0
    assert len(sent) == 1
    assert {
        k: sent[0][k] for k in ("task_id", "stream_id", "role", "purpose", "round", "model")
    } == {
        "task_id": "t1",
        "stream_id": None,
        "role": "orchestrator",
        "purpose": "merge",
        "round": 2,
        "model": "gpt-5",
    }


async def test_structured_calls_parse_each_schema() -> None:
    with running_simulator(FAST) as sim:
        for purpose, role, model, stream in (
            ("plan", "planner", Plan, None),
            ("execute", "executor", ExecutorReply, "s01"),
            ("review", "orchestrator", Review, "s01"),
            ("conflicts", "orchestrator", ConflictReport, None),
        ):
            result = await call_model(
                tier(sim, CHEAP if role == "executor" else PREMIUM),
                MESSAGES,
                role=role,
                purpose=purpose,
                task_id="t1",
                stream_id=stream,
                response_model=model,
            )
            assert isinstance(result.parsed, model)
        # The models support a JSON schema: it was sent as response_format.
        assert [c["schema"] for c in stats(sim.url)["calls"]] == [
            "Plan",
            "ExecutorReply",
            "Review",
            "ConflictReport",
        ]


async def test_schema_in_the_prompt_when_the_model_has_no_schema_support() -> None:
    with running_simulator(FAST) as sim:
        result = await call_model(
            tier(sim, "openai/tierd-local-model"),
            MESSAGES,
            role="planner",
            purpose="plan",
            task_id="t1",
            response_model=Plan,
        )
        assert isinstance(result.parsed, Plan)
        assert calls(sim.url)[0]["schema"] is None
        assert result.record.cost_usd is None  # not in the price table: unknown, not $0


async def test_429_is_retried_after_the_retry_after_delay() -> None:
    scenario = {
        **FAST,
        "failures": [{"kind": "429", "purpose": "review", "first": 2, "retry_after": 1}],
    }
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim, max_retries=3),
            MESSAGES,
            role="orchestrator",
            purpose="review",
            task_id="t1",
            stream_id="s1",
            response_model=Review,
            on_record=rec,
        )
        sent = calls(sim.url)
    assert isinstance(result.parsed, Review)
    assert [r.outcome for r in rec.records] == ["error", "error", "ok"]
    assert [r.attempts for r in rec.records] == [1, 2, 3]
    assert "RateLimitError" in (rec.records[0].error or "")
    assert [c["status"] for c in sent] == [429, 429, 200]
    for before, after in itertools.pairwise(sent):
        # The backoff alone would be 0.01 s: the wait comes from Retry-After.
        assert after["started_mono"] - before["ended_mono"] >= 1.0
    for before, after in itertools.pairwise(rec.records):
        assert after.started_at - before.ended_at >= 1.0


async def test_500_is_retried() -> None:
    scenario = {**FAST, "failures": [{"kind": "500", "role": "executor", "first": 2}]}
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim, CHEAP, max_retries=2),
            MESSAGES,
            role="executor",
            purpose="execute",
            task_id="t1",
            stream_id="s1",
            response_model=ExecutorReply,
            on_record=rec,
        )
    assert result.parsed is not None and result.record.attempts == 3
    assert [r.outcome for r in rec.records] == ["error", "error", "ok"]
    assert all(r.model == CHEAP for r in rec.records)
    assert "InternalServerError" in (rec.records[0].error or "")


async def test_timeout_is_retried_and_the_hung_request_closed() -> None:
    scenario = {**FAST, "failures": [{"kind": "timeout", "purpose": "review", "first": 1}]}
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim, timeout_s=0.5),
            MESSAGES,
            role="orchestrator",
            purpose="review",
            task_id="t1",
            stream_id="s1",
            response_model=Review,
            on_record=rec,
        )
        assert [r.outcome for r in rec.records] == ["error", "ok"]
        assert rec.records[0].latency_s >= 0.5
        assert "Timeout" in (rec.records[0].error or "")
        assert result.record.attempts == 2
        first = await _finished(sim.url, 0)
        assert first["disconnected"] and first["injected"] == "timeout"


async def test_timeout_falls_back_to_the_next_model() -> None:
    scenario = {**FAST, "failures": [{"kind": "timeout", "model": PREMIUM, "rate": 1.0}]}
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim, timeout_s=0.3, max_retries=0, fallbacks=[CHEAP]),
            MESSAGES,
            role="planner",
            purpose="plan",
            task_id="t1",
            response_model=Plan,
            on_record=rec,
        )
    assert isinstance(result.parsed, Plan)
    assert [(r.model, r.outcome) for r in rec.records] == [(PREMIUM, "error"), (CHEAP, "ok")]
    assert result.record.model == CHEAP


async def test_always_failing_model_falls_back_and_the_record_names_the_fallback() -> None:
    scenario = {**FAST, "fail_models": ["openai/gpt-4o"]}
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim, "openai/gpt-4o", max_retries=1, fallbacks=[PREMIUM]),
            MESSAGES,
            role="orchestrator",
            purpose="merge",
            task_id="t1",
            on_record=rec,
        )
        models = [c["model"] for c in calls(sim.url)]
    assert [(r.model, r.outcome) for r in rec.records] == [
        ("openai/gpt-4o", "error"),
        ("openai/gpt-4o", "error"),
        (PREMIUM, "ok"),
    ]
    assert result.record.model == PREMIUM and result.record.attempts == 3
    assert result.record.cost_usd == pytest.approx(
        premium_cost(result.record.prompt_tokens, result.record.completion_tokens, PREMIUM)
    )
    assert models == ["gpt-4o", "gpt-4o", "gpt-5"]


async def test_every_model_failing_raises_without_the_key() -> None:
    scenario = {**FAST, "fail_models": ["openai/gpt-4o", "openai/gpt-4o-mini"]}
    rec = Recorder()
    with running_simulator(scenario) as sim, pytest.raises(ModelCallError) as err:
        await call_model(
            tier(sim, "openai/gpt-4o", max_retries=1, fallbacks=["openai/gpt-4o-mini"]),
            MESSAGES,
            role="executor",
            purpose="execute",
            task_id="t1",
            stream_id="s1",
            on_record=rec,
        )
    assert "openai/gpt-4o, openai/gpt-4o-mini" in str(err.value)
    assert len(rec.records) == 4 and all(r.outcome == "error" for r in rec.records)
    assert all(SECRET not in (r.error or "") for r in rec.records)
    assert SECRET not in str(err.value)


def dead_port() -> int:
    """A loopback port nobody listens on: bound, then closed (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["empty", "truncated", "reset"])
async def test_empty_truncated_and_reset_answers_are_retried(kind: str) -> None:
    # merge is plain text: an empty merge must not pass as a result; plan is structured:
    # an empty plan is a provider fault (retried), not a repair request.
    scenario = {**FAST, "failures": [{"kind": kind, "first": 2}]}
    for purpose, role, model in (("merge", "orchestrator", None), ("plan", "planner", Plan)):
        rec = Recorder()
        with running_simulator(scenario) as sim:
            result = await call_model(
                tier(sim, max_retries=2),
                MESSAGES,
                role=role,
                purpose=purpose,
                task_id="t1",
                response_model=model,
                on_record=rec,
            )
            sent = calls(sim.url)
        assert result.text.strip() and (model is None or isinstance(result.parsed, Plan))
        assert [r.outcome for r in rec.records] == ["error", "error", "ok"], kind
        assert [c["injected"] for c in sent] == [kind, kind, None]
        assert all(r.error and SECRET not in r.error for r in rec.records[:2])
    if kind == "empty":
        assert "empty content" in (rec.records[0].error or "")
        assert rec.records[0].completion_tokens > 0  # an empty answer is still billed


async def test_connection_refused_is_retried_then_a_fallback_on_another_server_answers() -> None:
    port = dead_port()
    rec = Recorder()
    with running_simulator(FAST) as sim:
        down = ModelTier(
            model=PREMIUM,
            api_base=f"http://127.0.0.1:{port}/v1",
            api_key_env=KEY_ENV,
            fallbacks=[f"{CHEAP}@{sim.api_base}"],
            max_retries=1,
            backoff_s=0.01,
            timeout_s=5,
        )
        result = await call_model(
            down, MESSAGES, role="orchestrator", purpose="merge", task_id="t1", on_record=rec
        )
        models = [c["model"] for c in calls(sim.url)]
    assert [(r.model, r.outcome) for r in rec.records] == [
        (PREMIUM, "error"),
        (PREMIUM, "error"),
        (CHEAP, "ok"),
    ]
    assert result.record.model == CHEAP and models == ["gpt-5-mini"]
    assert str(port) in (rec.records[0].error or "")  # the cause, not just "Connection error"


async def test_every_server_refusing_names_the_models_and_the_cause_without_the_key() -> None:
    port = dead_port()
    down = ModelTier(
        model=CHEAP,
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env=KEY_ENV,
        max_retries=1,
        backoff_s=0.01,
        timeout_s=5,
    )
    with pytest.raises(ModelCallError) as err:
        await call_model(down, MESSAGES, role="executor", purpose="execute", task_id="t1")
    message = str(err.value)
    assert CHEAP in message and "2 attempts" in message
    assert "Connect" in message and str(port) in message
    assert SECRET not in message


def test_fallback_endpoints() -> None:
    t = ModelTier.from_config(
        {
            "model": "ollama/llama3",
            "api_base": "http://127.0.0.1:11434",
            "fallbacks": [
                "openai/gpt-5-mini@https://example.test/v1",
                "vertex_ai/claude-3-5-sonnet@20240620",
                "llama3.1",
            ],
        }
    )
    assert t.endpoints() == [
        ("ollama/llama3", "http://127.0.0.1:11434"),
        ("openai/gpt-5-mini", "https://example.test/v1"),
        ("vertex_ai/claude-3-5-sonnet@20240620", "http://127.0.0.1:11434"),
        ("llama3.1", "http://127.0.0.1:11434"),
    ]


async def test_non_retryable_error_moves_to_the_fallback_at_once() -> None:
    with running_simulator(FAST) as sim:
        # 400 from the server (messages missing content list) is not retried on that model.
        bad = ModelTier(
            "openai/gpt-5",
            api_base=sim.url + "/nowhere",
            api_key_env=KEY_ENV,
            max_retries=3,
            backoff_s=0.01,
            timeout_s=5,
        )
        rec = Recorder()
        with pytest.raises(ModelCallError):
            await call_model(
                bad, MESSAGES, role="orchestrator", purpose="merge", task_id="t1", on_record=rec
            )
        assert len(rec.records) == 1  # a 404 is not worth retrying


async def test_malformed_json_is_repaired_by_asking_again() -> None:
    scenario = {**FAST, "failures": [{"kind": "malformed", "purpose": "plan", "first": 1}]}
    rec = Recorder()
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim),
            MESSAGES,
            role="planner",
            purpose="plan",
            task_id="t1",
            response_model=Plan,
            on_record=rec,
        )
    assert isinstance(result.parsed, Plan)
    assert [r.outcome for r in rec.records] == ["error", "ok"]
    assert "not valid JSON" in (rec.records[0].error or "")
    assert rec.records[0].cost_usd > 0  # the broken answer still cost tokens
    assert result.record.attempts == 2


async def test_json_wrapped_in_prose_is_extracted_without_asking_again() -> None:
    scenario = {**FAST, "failures": [{"kind": "wrapped", "purpose": "review", "first": 1}]}
    with running_simulator(scenario) as sim:
        result = await call_model(
            tier(sim),
            MESSAGES,
            role="orchestrator",
            purpose="review",
            task_id="t1",
            stream_id="s1",
            response_model=Review,
        )
        assert result.text.startswith("Sure") and isinstance(result.parsed, Review)
        assert stats(sim.url)["total"] == 1


async def test_answer_that_never_parses_raises_model_output_error() -> None:
    scenario = {**FAST, "failures": [{"kind": "malformed", "purpose": "plan", "rate": 1.0}]}
    rec = Recorder()
    with running_simulator(scenario) as sim, pytest.raises(ModelOutputError) as err:
        await call_model(
            tier(sim),
            MESSAGES,
            role="planner",
            purpose="plan",
            task_id="t1",
            response_model=Plan,
            on_record=rec,
            repairs=2,
        )
    assert isinstance(err.value, ValueError)  # the planner's retry loop catches ValueError
    assert "Plan" in str(err.value) and err.value.text
    assert len(rec.records) == 3 and all(r.outcome == "error" for r in rec.records)


async def test_the_tiers_max_repairs_bounds_the_repair_requests() -> None:
    scenario = {**FAST, "failures": [{"kind": "malformed", "purpose": "plan", "rate": 1.0}]}
    rec = Recorder()
    with running_simulator(scenario) as sim, pytest.raises(ModelOutputError) as err:
        await call_model(
            tier(sim, max_repairs=4),
            MESSAGES,
            role="planner",
            purpose="plan",
            task_id="t1",
            response_model=Plan,
            on_record=rec,
        )
    assert "after 4 repair request(s)" in str(err.value)
    assert len(rec.records) == 5


async def test_cancelling_the_call_closes_the_request() -> None:
    rec = Recorder()
    with running_simulator({"latency": {"executor": 5.0}}) as sim:
        started = time.monotonic()
        task = asyncio.create_task(
            call_model(
                tier(sim, CHEAP),
                MESSAGES,
                role="executor",
                purpose="execute",
                task_id="t9",
                stream_id="s1",
                response_model=ExecutorReply,
                on_record=rec,
            )
        )
        await _until(lambda s: s["in_flight"] >= 1, sim.url)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await _finished(sim.url, 0)
    assert record["disconnected"] and record["status"] == 499
    assert record["ended_mono"] - started < 4.0  # noticed well before the 5 s answer
    assert [(r.outcome, r.error) for r in rec.records] == [("error", "cancelled")]


async def test_sync_on_record_and_a_failing_recorder() -> None:
    seen: list[UsageRecord] = []

    def broken(record: UsageRecord) -> None:
        seen.append(record)
        raise RuntimeError("recorder down")

    with running_simulator(FAST) as sim:
        result = await call_model(
            tier(sim),
            MESSAGES,
            role="orchestrator",
            purpose="fix",
            task_id="t1",
            stream_id="s1",
            on_record=broken,
        )
    assert result.text and seen == [result.record]


def test_extract_json() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Here:\n```json\n{"a": [1, 2]}\n```\nbye') == {"a": [1, 2]}
    assert extract_json('prose {"a": {"b": "}"}} more') == {"a": {"b": "}"}}
    with pytest.raises(ValueError):
        extract_json("no json here")


async def _until(
    predicate: Callable[[dict[str, Any]], Any], url: str, within: float = 5.0
) -> dict[str, Any]:
    """Poll the simulator's stats until `predicate(stats)` holds; return the stats."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while not predicate(current := (await client.get(f"{url}/_sim/stats")).json()):
            assert time.monotonic() < deadline, current["calls"]
            await asyncio.sleep(0.02)
    return current


async def _finished(url: str, index: int) -> dict[str, Any]:
    """The simulator's record number `index` once it has a status."""
    current = await _until(
        lambda s: len(s["calls"]) > index and s["calls"][index]["status"] is not None, url
    )
    return current["calls"][index]


async def test_a_fallback_on_another_server_is_never_sent_the_tiers_key() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append(self.headers.get("authorization", ""))
            body = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "from elsewhere"},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        tier = ModelTier(
            model=PREMIUM,
            api_base=f"http://127.0.0.1:{dead_port()}/v1",
            api_key_env=KEY_ENV,
            fallbacks=[f"{CHEAP}@http://127.0.0.1:{other.server_port}/v1"],
            max_retries=0,
            backoff_s=0.01,
            timeout_s=5,
        )
        result = await call_model(tier, MESSAGES, role="executor", purpose="execute", task_id="t1")
    finally:
        other.shutdown()
    assert result.text == "from elsewhere"
    assert seen and all(SECRET not in h for h in seen), seen


async def test_each_request_names_its_step() -> None:
    """The model caller sends the call's memo key as X-Tierd-Step, so a server's log can match
    every request to the step it was for (the chaos test proves no saved step is asked again)."""
    from roles.model_caller import ModelCaller

    with running_simulator(FAST) as sim:
        caller = ModelCaller({"executor": tier(sim, CHEAP)}, "t-step")
        await caller("executor", "execute", MESSAGES, key="exec:s1:r0:a0", stream_id="s1")
        (call,) = calls(sim.url)
    assert (call["task_id"], call["stream_id"], call["step"]) == ("t-step", "s1", "exec:s1:r0:a0")
