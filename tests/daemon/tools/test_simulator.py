"""The model simulator: the OpenAI protocol (plain and streaming), answers per purpose as the
scenario says, injected failures, counts and call records. Real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import litellm
import pytest
from support import CHEAP, PREMIUM
from support.simulator import SimulatorProcess, calls, reset, running_simulator, stats

from daemon.tools.simulator import Scenario, load_scenario, scenarios_dir
from roles.plan.schema import ConflictReport, ExecutorReply, Plan, Review
from roles.plan.validator import PlanRules, topological_order, validate_plan

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}


def headers(
    role: str, purpose: str, task: str = "t1", stream: str | None = None, round_: int = 0
) -> dict[str, str]:
    h = {
        "X-Tierd-Role": role,
        "X-Tierd-Purpose": purpose,
        "X-Tierd-Task": task,
        "X-Tierd-Round": str(round_),
    }
    if stream:
        h["X-Tierd-Stream"] = stream
    return h


def ask(
    url: str,
    purpose: str,
    *,
    role: str | None = None,
    sid: str | None = None,
    round_: int = 0,
    task: str = "t1",
    model: str = "gpt-5",
    prompt: str = "hello",
    **body: Any,
) -> httpx.Response:
    from daemon.tools.simulator import ROLE_OF_PURPOSE

    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        headers=headers(role or ROLE_OF_PURPOSE[purpose], purpose, task, sid, round_),
        json={"model": model, "messages": [{"role": "user", "content": prompt}], **body},
    )


def content(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


# --- protocol ---------------------------------------------------------------------------------


def test_plain_completion_has_usage_and_echoes_the_model() -> None:
    with running_simulator(FAST) as sim:
        resp = ask(sim.url, "plan", model="gpt-5", prompt="x" * 400)
        data = resp.json()
        assert resp.status_code == 200
        assert data["object"] == "chat.completion"
        assert data["model"] == "gpt-5"
        assert data["choices"][0]["message"]["role"] == "assistant"
        usage = data["usage"]
        assert usage["prompt_tokens"] == 100  # 400 characters / 4
        assert usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        Plan.model_validate_json(data["choices"][0]["message"]["content"])
        # The path without /v1 works too, and the model list is served.
        other = httpx.post(
            f"{sim.url}/chat/completions",
            headers=headers("planner", "plan"),
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
        assert other.status_code == 200
        models = httpx.get(f"{sim.url}/v1/models").json()
        assert "gpt-5" in [m["id"] for m in models["data"]]


def _sse_events(resp: httpx.Response) -> list[str]:
    return [line[len("data: ") :] for line in resp.text.splitlines() if line.startswith("data: ")]


def test_streaming_sends_chunks_usage_and_done() -> None:
    with running_simulator(FAST) as sim:
        resp = ask(
            sim.url, "execute", sid="s1", stream=True, stream_options={"include_usage": True}
        )
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(resp)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert ExecutorReply.model_validate_json(text).kind == "output"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
        # Without include_usage there is no usage chunk.
        plain = [
            json.loads(e) for e in _sse_events(ask(sim.url, "execute", sid="s1", stream=True))[:-1]
        ]
        assert all("usage" not in c for c in plain)


async def test_streaming_through_litellm() -> None:
    with running_simulator(FAST) as sim:
        response = await litellm.acompletion(
            model=CHEAP,
            messages=[{"role": "user", "content": "go"}],
            api_base=sim.api_base,
            api_key="anything",
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers("executor", "execute", stream="s1"),
            max_retries=0,
        )
        text, usage = "", None
        async for chunk in response:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = getattr(chunk, "usage", None) or usage
        assert ExecutorReply.model_validate_json(text).output
        assert usage is not None and usage.completion_tokens > 0


# --- counts and records -----------------------------------------------------------------------


def test_stats_count_per_role_purpose_and_stream_and_reset_clears() -> None:
    with running_simulator(FAST) as sim:
        ask(sim.url, "plan")
        for sid in ("a", "b", "a"):
            ask(sim.url, "execute", sid=sid)
        ask(sim.url, "review", sid="a")
        ask(sim.url, "execute", sid="a", task="t2")
        s = stats(sim.url)
        assert s["total"] == s["answered"] == 6
        assert s["by_role"] == {"executor": 4, "orchestrator": 1, "planner": 1}
        assert s["by_purpose"] == {"execute": 4, "plan": 1, "review": 1}
        assert s["by_stream"]["t1/a"] == 3 and s["by_stream"]["t1/b"] == 1
        assert s["answered_by_stream"]["t2/a"] == 1
        record = s["calls"][0]
        for key in (
            "task_id",
            "stream_id",
            "role",
            "purpose",
            "model",
            "round",
            "status",
            "started_mono",
            "ended_mono",
            "started_wall",
            "ended_wall",
            "disconnected",
        ):
            assert key in record
        assert record["status"] == 200 and record["disconnected"] is False
        assert record["ended_mono"] >= record["started_mono"]
        reset(sim.url)
        assert stats(sim.url)["total"] == 0


def test_each_call_records_the_step_it_belongs_to() -> None:
    with running_simulator(FAST) as sim:
        for step, purpose, sid in (
            ("plan:0", "plan", None),
            ("exec:a:r0:a0", "execute", "a"),
            ("review:a:r0", "review", "a"),
            ("merge:0", "merge", None),
        ):
            resp = httpx.post(
                f"{sim.url}/v1/chat/completions",
                timeout=30,
                headers={**headers("x", purpose, "t1", sid), "X-Tierd-Step": step},
                json={"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert resp.status_code == 200, resp.text
        ask(sim.url, "execute", sid="b")  # a client that sends no step
        assert [c["step"] for c in stats(sim.url)["calls"]] == [
            "plan:0",
            "exec:a:r0:a0",
            "review:a:r0",
            "merge:0",
            None,
        ]


def test_latency_is_scaled_seeded_and_in_range() -> None:
    scenario = {"seed": 3, "latency": {"executor": [1.0, 2.0]}}
    with running_simulator(scenario, scale=0.05) as sim:
        started = time.monotonic()
        for sid in ("a", "b", "c"):
            ask(sim.url, "execute", sid=sid)
        first = [c["latency_s"] for c in stats(sim.url)["calls"]]
        assert all(0.05 <= x <= 0.1 for x in first)
        assert time.monotonic() - started >= sum(first)
        for c in stats(sim.url)["calls"]:
            assert c["ended_mono"] - c["started_mono"] >= c["latency_s"]
    # Another server with the same seed draws the same latencies for the same calls.
    with running_simulator(scenario, scale=0.05) as sim:
        for sid in ("c", "b", "a"):
            ask(sim.url, "execute", sid=sid)
        again = {c["stream_id"]: c["latency_s"] for c in stats(sim.url)["calls"]}
        assert [again[s] for s in ("a", "b", "c")] == first


# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["independent", "chain", "layers", "random", "fan_in"])
def test_generated_plan_shapes_are_valid(pattern: str) -> None:
    scenario = Scenario.model_validate(
        {"plan": {"generate": {"width": 12, "pattern": pattern, "depth": 3}}}
    )
    plan = scenario.valid_plan()
    assert len(plan.streams) == 12
    assert validate_plan(plan, PlanRules(max_streams=12)) == []
    deps = {s.id: s.depends_on for s in plan.streams}
    if pattern == "independent":
        assert not any(deps.values())
    elif pattern == "chain":
        assert topological_order(plan) == [s.id for s in plan.streams]
        assert all(len(d) == 1 for d in list(deps.values())[1:])
    elif pattern == "layers":
        assert not any(deps[s] for s in ("s01", "s02", "s03", "s04"))
        assert all(
            deps[s] and set(deps[s]) <= {"s05", "s06", "s07", "s08"}
            for s in ("s09", "s10", "s11", "s12")
        )
    elif pattern == "fan_in":
        assert deps["s12"] == [f"s{i:02d}" for i in range(1, 12)]


def test_explicit_plan_is_answered() -> None:
    scenario = {
        **FAST,
        "plan": {
            "summary": "two",
            "merge_instruction": "join",
            "streams": [
                {"id": "x", "title": "X", "job": "do x", "output_definition": "x"},
                {
                    "id": "y",
                    "title": "Y",
                    "job": "do y",
                    "output_definition": "y",
                    "depends_on": ["x"],
                },
            ],
        },
    }
    with running_simulator(scenario) as sim:
        plan = Plan.model_validate_json(content(ask(sim.url, "plan")))
        assert [s.id for s in plan.streams] == ["x", "y"]
        assert plan.streams[1].depends_on == ["x"] and plan.merge_instruction == "join"


def test_invalid_plans_for_the_first_attempts() -> None:
    kinds = [
        "cycle",
        "duplicate_id",
        "missing_output_definition",
        "unknown_dependency",
        "overlapping_ownership",
    ]
    scenario = {**FAST, "plan": {"invalid_first": len(kinds), "invalid": kinds}}
    expected = [
        "cycle",
        "is used by 2 streams",
        "no output_definition",
        "unknown stream",
        "overlapping areas",
    ]
    with running_simulator(scenario) as sim:
        for attempt, needle in enumerate(expected):
            plan = Plan.model_validate_json(content(ask(sim.url, "plan", round_=attempt)))
            problems = validate_plan(plan, PlanRules())
            assert any(needle in p for p in problems), (attempt, problems)
        valid = Plan.model_validate_json(content(ask(sim.url, "plan", round_=len(kinds))))
        assert validate_plan(valid, PlanRules()) == []


def test_unparseable_invalid_plans() -> None:
    scenario = {**FAST, "plan": {"invalid_first": 2, "invalid": ["no_streams", "malformed"]}}
    with running_simulator(scenario) as sim:
        with pytest.raises(ValueError):
            Plan.model_validate_json(content(ask(sim.url, "plan", round_=0)))
        with pytest.raises(ValueError):
            json.loads(content(ask(sim.url, "plan", round_=1)))


def test_executor_question_split_and_outputs_per_round() -> None:
    scenario = {
        **FAST,
        "streams": {
            "q": {"reply": "question", "question": "Which region?"},
            "big": {
                "reply": "split",
                "split": [
                    {
                        "id": "a",
                        "title": "A",
                        "job": "a",
                        "output_definition": "a",
                        "ownership": ["a/"],
                    },
                    {
                        "id": "b",
                        "title": "B",
                        "job": "b",
                        "output_definition": "b",
                        "ownership": ["b/"],
                        "depends_on": ["a"],
                    },
                ],
            },
            "o": {"output": ["first {stream}", "second try"]},
        },
    }
    with running_simulator(scenario) as sim:
        reply = ExecutorReply.model_validate_json(content(ask(sim.url, "execute", sid="q")))
        assert reply.kind == "question" and reply.question == "Which region?"
        answered = ask(sim.url, "execute", sid="q", prompt="Q: Which region?\nA: EMEA")
        assert ExecutorReply.model_validate_json(content(answered)).kind == "output"

        split = ExecutorReply.model_validate_json(content(ask(sim.url, "execute", sid="big")))
        assert split.kind == "split" and [s.id for s in split.streams or []] == ["a", "b"]
        # Proposed once: asked again (e.g. after an invalid split) it does the work.
        again = ExecutorReply.model_validate_json(content(ask(sim.url, "execute", sid="big")))
        assert again.kind == "output"

        outs = [
            ExecutorReply.model_validate_json(
                content(ask(sim.url, "execute", sid="o", round_=r))
            ).output
            for r in (0, 1, 5, 100)
        ]
        assert outs == ["first o", "second try", "second try", "second try"]


def test_review_verdicts_per_round_conflicts_fix_and_merge() -> None:
    scenario = {
        **FAST,
        "streams": {
            "s2": {
                "review": ["redo", "fix", "escalate"],
                "feedback": "add numbers",
                "fixed_output": "fixed!",
                "escalate_question": "Which tone?",
            }
        },
        "conflict_rounds": [
            {
                "conflicts": [
                    {
                        "streams": ["s1", "s2"],
                        "description": "clash",
                        "redo": ["s2"],
                        "feedback": "align",
                    }
                ]
            }
        ],
        "merge_output": "MERGED\n{outputs}",
    }
    with running_simulator(scenario) as sim:
        verdicts = [
            Review.model_validate_json(content(ask(sim.url, "review", sid="s2", round_=r)))
            for r in range(4)
        ]
        assert [v.verdict for v in verdicts] == ["redo", "fix", "escalate", "accept"]
        assert verdicts[0].feedback == "add numbers"
        assert verdicts[1].fixed_output == "fixed!"
        assert verdicts[2].question == "Which tone?"
        assert (
            Review.model_validate_json(content(ask(sim.url, "review", sid="other"))).verdict
            == "accept"
        )

        first = ConflictReport.model_validate_json(content(ask(sim.url, "conflicts")))
        assert first.conflicts[0].redo == ["s2"]
        later = ConflictReport.model_validate_json(content(ask(sim.url, "conflicts", round_=1)))
        assert later.conflicts == []

        assert content(ask(sim.url, "fix", sid="s2")) == "fixed!"
        prompt = '<output stream="s1">\nalpha\n</output>\n<output stream="s2">\nbeta\n</output>'
        merged = content(ask(sim.url, "merge", prompt=prompt))
        assert merged.startswith("MERGED") and "## s1\n\nalpha" in merged and "beta" in merged


def test_purpose_guessed_from_schema_without_headers() -> None:
    with running_simulator(FAST) as sim:
        resp = httpx.post(
            f"{sim.url}/v1/chat/completions",
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "Review", "schema": {}},
                },
            },
        )
        assert Review.model_validate_json(content(resp)).verdict == "accept"
        assert stats(sim.url)["calls"][0]["schema"] == "Review"


# --- failures ---------------------------------------------------------------------------------


def test_injected_429_500_and_model_failures() -> None:
    scenario = {
        **FAST,
        "fail_models": ["openai/broken"],
        "failures": [
            {"kind": 429, "purpose": "review", "first": 2, "retry_after": 2},
            {"kind": "500", "role": "executor", "stream": "s9", "first": 1, "status": 503},
        ],
    }
    with running_simulator(scenario) as sim:
        r1, r2, r3 = (ask(sim.url, "review", sid="s1") for _ in range(3))
        assert r1.status_code == r2.status_code == 429
        assert r1.headers["retry-after"] == "2"
        assert r1.json()["error"]["type"] == "rate_limit_error"
        assert r3.status_code == 200
        assert ask(sim.url, "execute", sid="s9").status_code == 503
        assert ask(sim.url, "execute", sid="s9").status_code == 200
        assert ask(sim.url, "execute", sid="s1").status_code == 200
        assert all(
            ask(sim.url, "plan", model=m).status_code == 500 for m in ("broken", "openai/broken")
        )
        s = stats(sim.url)
        assert s["by_status"] == {"200": 3, "429": 2, "500": 2, "503": 1}
        assert [c["injected"] for c in calls(sim.url, purpose="review")] == ["429", "429", None]


def test_failure_rate_is_deterministic() -> None:
    scenario = {**FAST, "seed": 5, "failures": [{"kind": "500", "rate": 0.5}]}
    outcomes = []
    for _ in range(2):
        with running_simulator(scenario) as sim:
            outcomes.append([ask(sim.url, "execute", sid=f"s{i}").status_code for i in range(20)])
    assert outcomes[0] == outcomes[1]
    assert 200 in outcomes[0] and 500 in outcomes[0]


def test_malformed_and_wrapped_json() -> None:
    scenario = {
        **FAST,
        "failures": [
            {"kind": "malformed", "stream": "m", "first": 1},
            {"kind": "wrapped", "stream": "w", "first": 1},
        ],
    }
    with running_simulator(scenario) as sim:
        with pytest.raises(ValueError):
            json.loads(content(ask(sim.url, "execute", sid="m")))
        json.loads(content(ask(sim.url, "execute", sid="m")))  # only the first call
        wrapped = content(ask(sim.url, "execute", sid="w"))
        assert wrapped.startswith("Sure") and "```json" in wrapped


def test_timeout_hangs_until_the_client_leaves_and_is_recorded() -> None:
    scenario = {**FAST, "failures": [{"kind": "timeout", "stream": "slow", "first": 1}]}
    with running_simulator(scenario) as sim:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{sim.url}/v1/chat/completions",
                timeout=0.3,
                headers=headers("executor", "execute", stream="slow"),
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            )
        deadline = time.monotonic() + 5
        while not (gone := calls(sim.url, stream_id="slow")[0])["disconnected"]:
            assert time.monotonic() < deadline, gone
            time.sleep(0.02)
        assert gone["status"] == 499 and gone["injected"] == "timeout"
        assert ask(sim.url, "execute", sid="slow").status_code == 200


def test_truncated_body_and_stream_are_cut_mid_answer() -> None:
    scenario = {**FAST, "failures": [{"kind": "truncated", "purpose": "plan", "first": 2}]}
    with running_simulator(scenario) as sim:
        cut = ask(sim.url, "plan")
        assert cut.status_code == 200
        assert cut.headers["content-type"] == "application/json"
        with pytest.raises(ValueError):
            cut.json()  # the HTTP body itself is not JSON: not just the content
        sse = ask(sim.url, "plan", stream=True)
        assert sse.status_code == 200
        assert "[DONE]" not in sse.text and '"finish_reason": "stop"' not in sse.text
        chunks = [
            json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")
        ]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        with pytest.raises(ValueError):
            json.loads(text)  # half a plan
        Plan.model_validate_json(content(ask(sim.url, "plan")))  # the third call is whole
        assert [c["injected"] for c in calls(sim.url)] == ["truncated", "truncated", None]


def test_empty_answers_have_no_content_for_every_purpose() -> None:
    scenario = {**FAST, "failures": [{"kind": "empty", "first": 2}]}
    with running_simulator(scenario) as sim:
        assert content(ask(sim.url, "merge")) == ""
        sse = ask(sim.url, "execute", sid="s1", stream=True)
        assert sse.status_code == 200 and "[DONE]" in sse.text
        assert '"content": ""' in sse.text and '"content": "{' not in sse.text
        assert content(ask(sim.url, "merge")).startswith("# Result")
        assert [c["status"] for c in calls(sim.url)] == [200, 200, 200]


def test_reset_drops_the_connection_without_an_answer() -> None:
    scenario = {**FAST, "failures": [{"kind": "reset", "purpose": "review", "first": 1}]}
    with running_simulator(scenario) as sim:
        with pytest.raises(httpx.TransportError):  # reset by peer / disconnected: no status
            ask(sim.url, "review", sid="s1")
        assert ask(sim.url, "review", sid="s1").status_code == 200
        first = calls(sim.url)[0]
        assert first["injected"] == "reset" and first["status"] == 444


def test_failure_rule_kinds_are_validated() -> None:
    from daemon.tools.simulator import FailureRule

    for kind in ("429", "500", "timeout", "malformed", "wrapped", "truncated", "empty", "reset"):
        assert FailureRule(kind=kind).kind == kind
    with pytest.raises(ValueError, match="kind"):
        FailureRule.model_validate({"kind": "explode"})
    with pytest.raises(ValueError, match="rate"):
        FailureRule.model_validate({"kind": "empty", "rate": 1.5})


async def test_disconnect_during_latency_and_streaming_is_recorded() -> None:
    scenario = {"latency": {"executor": 5.0}}
    with running_simulator(scenario) as sim:
        async with httpx.AsyncClient(base_url=sim.url) as client:
            for sid, streaming in (("plain", False), ("sse", True)):
                request = asyncio.create_task(
                    client.post(
                        "/v1/chat/completions",
                        headers=headers("executor", "execute", stream=sid),
                        json={
                            "model": "m",
                            "stream": streaming,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                    )
                )
                await asyncio.sleep(0.3)
                request.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await request
        deadline = time.monotonic() + 5
        while stats(sim.url)["disconnected"] < 2:
            assert time.monotonic() < deadline, stats(sim.url)["calls"]
            await asyncio.sleep(0.02)
        for record in stats(sim.url)["calls"]:
            assert record["disconnected"] and record["status"] == 499
            assert record["ended_mono"] - record["started_mono"] < 4.0


# --- scenarios --------------------------------------------------------------------------------


def test_shipped_scenarios_load_and_their_plans_validate() -> None:
    names = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
    assert {"sales_lead", "wide", "dag"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        plan = scenario.valid_plan()
        assert validate_plan(plan, PlanRules(max_streams=len(plan.streams))) == [], name
    wide, dag = load_scenario("wide").valid_plan(), load_scenario("dag").valid_plan()
    assert len(wide.streams) == 20 and not any(s.depends_on for s in wide.streams)
    assert len(dag.streams) == 20 and sum(bool(s.depends_on) for s in dag.streams) >= 10
    lead = load_scenario("sales_lead")
    assert lead.latency.executor == (1.0, 4.0) and lead.latency.planner == (2.0, 6.0)
    assert [s.id for s in lead.valid_plan().streams] == ["research", "draft", "fit_risk"]


def test_sales_lead_sends_the_draft_back_once() -> None:
    with running_simulator("sales_lead", scale=0.002) as sim:
        first = ConflictReport.model_validate_json(content(ask(sim.url, "conflicts")))
        assert first.conflicts and first.conflicts[0].redo == ["draft"]
        assert "too" in first.conflicts[0].description or first.conflicts[0].feedback
        assert not ConflictReport.model_validate_json(
            content(ask(sim.url, "conflicts", round_=1))
        ).conflicts
        confident = (
            ExecutorReply.model_validate_json(content(ask(sim.url, "execute", sid="draft"))).output
            or ""
        )
        redone = (
            ExecutorReply.model_validate_json(
                content(ask(sim.url, "execute", sid="draft", round_=100))
            ).output
            or ""
        )
        assert "guaranteed" in confident and "guaranteed" not in redone
        for sid in ("research", "draft", "fit_risk"):
            assert (
                Review.model_validate_json(content(ask(sim.url, "review", sid=sid))).verdict
                == "accept"
            )


def test_scenario_errors_are_loud(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="latencyy"):
        Scenario.model_validate({"latencyy": {}})
    with pytest.raises(ValueError, match="range"):
        Scenario.model_validate({"latency": {"executor": [3, 1]}})
    with pytest.raises(ValueError, match="split"):
        Scenario.model_validate({"streams": {"s": {"reply": "split"}}})
    with pytest.raises(FileNotFoundError, match="sales_lead"):
        load_scenario(tmp_path / "missing.toml")
    path = tmp_path / "mine.toml"
    path.write_text('seed = 4\n[plan.generate]\nwidth = 2\npattern = "chain"\n')
    loaded = load_scenario(path)
    assert loaded.name == "mine" and loaded.valid_plan().streams[1].depends_on == ["s01"]


def test_scenario_can_be_swapped_over_http() -> None:
    with running_simulator(FAST) as sim:
        ask(sim.url, "plan")
        resp = httpx.post(
            f"{sim.url}/_sim/scenario",
            json={"name": "two", "scale": 0.5, "plan": {"generate": {"width": 2}}},
        )
        assert resp.json() == {"ok": True, "name": "two", "scale": 0.5}
        assert stats(sim.url)["total"] == 0
        current = httpx.get(f"{sim.url}/_sim/scenario").json()
        assert current["scale"] == 0.5 and current["scenario"]["name"] == "two"
        bad = httpx.post(f"{sim.url}/_sim/scenario", json={"nope": 1})
        assert bad.status_code == 400


def test_simulator_as_a_subprocess() -> None:
    with SimulatorProcess("sales_lead", scale=0.001) as proc:
        plan = Plan.model_validate_json(content(ask(proc.url, "plan", model=PREMIUM)))
        assert [s.id for s in plan.streams] == ["research", "draft", "fit_risk"]
        assert stats(proc.url)["by_role"] == {"planner": 1}
