"""The report's time: the human's waits apart from the work. A stream that waited 20 s for an
answer and worked 2 s shows 2 s of work and 20 s waited; the task's waits for the human come
out of the execution time, the sequential sum, the critical path and the work time."""

from __future__ import annotations

import pytest

from roles.models.costs import cost_of
from roles.models.usage import UsageRecord
from roles.plan.schema import Plan
from roles.report import StreamFacts, build_report, overlap

PREMIUM, CHEAP = "openai/gpt-5", "openai/gpt-5-mini"


def _plan(*ids: str, chain: bool = False) -> Plan:
    streams = [
        {
            "id": sid,
            "title": sid,
            "job": "j",
            "output_definition": "o",
            "ownership": [f"{sid}/"],
            "acceptance_check": "a",
            "depends_on": [ids[i - 1]] if chain and i else [],
        }
        for i, sid in enumerate(ids)
    ]
    return Plan.model_validate({"summary": "s", "streams": streams, "merge_instruction": "m"})


def _stream(sid: str, start: float, end: float, parent: str | None = None) -> StreamFacts:
    return StreamFacts(sid, sid, "accepted", "out", "accept", None, 1, start, end, parent)


def _report(streams: list[StreamFacts], plan: Plan, **kw: object) -> dict[str, object]:
    return build_report(
        state="completed",
        plan=plan,
        streams=streams,
        usage=[],
        premium_model="m",
        premium_cost=lambda p, c, m, cached: 0.0,
        started_at=0.0,
        ended_at=40.0,
        settings={},
        **kw,  # type: ignore[arg-type]
    )


def test_overlap_counts_each_second_once() -> None:
    assert overlap([], 0, 10) == 0
    assert overlap([(2, 4), (3, 6), (8, 20)], 0, 10) == pytest.approx(6.0)
    assert overlap([(-5, 1), (9, 30)], 0, 10) == pytest.approx(2.0)


def test_a_stream_that_waited_20s_for_an_answer_shows_its_2s_of_work() -> None:
    # a: started at 5, asked at 6, answered at 26 (the task waited: b was done), ended at 27.
    streams = [_stream("a", 5.0, 27.0), _stream("b", 5.0, 6.0)]
    report = _report(streams, _plan("a", "b"), waits={"a": [(6.0, 26.0)]}, human=[(6.5, 26.0)])
    by_id = {s["id"]: s for s in report["streams"]}  # type: ignore[attr-defined]
    assert by_id["a"]["duration_s"] == pytest.approx(2.0)
    assert by_id["a"]["waited_s"] == pytest.approx(20.0)
    assert by_id["b"]["duration_s"] == pytest.approx(1.0) and by_id["b"]["waited_s"] == 0
    t = report["time"]
    assert t["wall_clock_s"] == pytest.approx(40.0)  # type: ignore[index]
    assert t["human_wait_s"] == pytest.approx(19.5)  # type: ignore[index]
    assert t["work_s"] == pytest.approx(20.5)  # type: ignore[index]
    # 22 s from the first start to the last end, less the 19.5 s the task waited.
    assert t["execution_s"] == pytest.approx(2.5)  # type: ignore[index]
    assert t["sequential_s"] == pytest.approx(3.0)  # type: ignore[index]
    assert t["critical_path_s"] == pytest.approx(2.0)  # type: ignore[index]


def test_a_split_streams_wait_is_its_sub_streams() -> None:
    streams = [
        _stream("a", 0.0, 30.0),
        _stream("a1", 1.0, 29.0, parent="a"),
        _stream("b", 0.0, 10.0),
    ]
    report = _report(streams, _plan("a", "b", chain=False), waits={"a1": [(2.0, 22.0)]}, human=[])
    by_id = {s["id"]: s for s in report["streams"]}  # type: ignore[attr-defined]
    assert by_id["a1"]["waited_s"] == pytest.approx(20.0)
    assert by_id["a"]["waited_s"] == pytest.approx(20.0)
    assert by_id["a"]["duration_s"] == pytest.approx(10.0)
    assert report["time"]["human_wait_s"] == 0  # type: ignore[index]


def test_without_waits_the_times_are_as_before() -> None:
    streams = [_stream("a", 1.0, 4.0), _stream("b", 4.0, 9.0)]
    report = _report(streams, _plan("a", "b", chain=True))
    t = report["time"]
    assert t["execution_s"] == pytest.approx(8.0)  # type: ignore[index]
    assert t["sequential_s"] == pytest.approx(8.0)  # type: ignore[index]
    assert t["critical_path_s"] == pytest.approx(8.0)  # type: ignore[index]
    assert t["human_wait_s"] == 0 and t["work_s"] == pytest.approx(40.0)  # type: ignore[index]


def _call(model: str, prompt: int, completion: int, cached: int) -> UsageRecord:
    return UsageRecord(
        task_id="t",
        stream_id=None,
        role="orchestrator" if model == PREMIUM else "executor",
        purpose="review" if model == PREMIUM else "execute",
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cost_usd=cost_of(prompt, completion, model, cached),
    )


def test_the_report_shows_cached_tokens_and_what_caching_saved() -> None:
    usage = [
        _call(PREMIUM, 3000, 200, 2048),
        _call(PREMIUM, 3000, 200, 0),
        _call(CHEAP, 900, 500, 0),
    ]
    report = build_report(
        state="completed",
        plan=_plan("a"),
        streams=[_stream("a", 0.0, 1.0)],
        usage=usage,
        premium_model=PREMIUM,
        premium_cost=cost_of,
        started_at=0.0,
        ended_at=2.0,
        settings={},
    )
    assert report["usage"]["total"]["cached_tokens"] == 2048  # type: ignore[index]
    assert report["usage"]["per_role"]["orchestrator"]["cached_tokens"] == 2048  # type: ignore[index]
    cost = report["cost"]
    spent = sum(u.cost_usd or 0.0 for u in usage)
    uncached = sum(cost_of(u.prompt_tokens, u.completion_tokens, u.model) or 0.0 for u in usage)
    # gpt-5 bills cached input at a tenth: 2,048 tokens x $1.25/M x 0.9 saved.
    assert cost["total_usd"] == pytest.approx(spent)  # type: ignore[index]
    assert cost["uncached_usd"] == pytest.approx(uncached)  # type: ignore[index]
    assert cost["caching_saved_usd"] == pytest.approx(2048 * 1.25e-6 * 0.9)  # type: ignore[index]
    assert cost["cached_tokens"] == 2048  # type: ignore[index]
    # Premium-only prices the same cached tokens on the premium model (the cheap call had
    # none), and without caching costs more by the same saving.
    premium = sum(
        cost_of(u.prompt_tokens, u.completion_tokens, PREMIUM, u.cached_tokens) or 0.0
        for u in usage
    )
    assert cost["premium_only_usd"] == pytest.approx(premium)  # type: ignore[index]
    assert cost["premium_only_uncached_usd"] == pytest.approx(  # type: ignore[index]
        premium + 2048 * 1.25e-6 * 0.9
    )
    assert cost["tiering_saved_usd"] == pytest.approx(premium - spent)  # type: ignore[index]


def test_an_unknown_price_stays_unknown_with_or_without_caching() -> None:
    unknown = UsageRecord(
        task_id="t",
        stream_id=None,
        role="executor",
        purpose="execute",
        model="openai/not-a-real-model-xyz",
        prompt_tokens=2000,
        completion_tokens=10,
        cached_tokens=1024,
        cost_usd=None,
    )
    report = build_report(
        state="completed",
        plan=None,
        streams=[],
        usage=[unknown],
        premium_model=PREMIUM,
        premium_cost=cost_of,
        started_at=0.0,
        ended_at=1.0,
        settings={},
    )
    cost = report["cost"]
    assert cost["total_usd"] is None and cost["uncached_usd"] is None  # type: ignore[index]
    assert cost["caching_saved_usd"] is None  # type: ignore[index]
    assert cost["premium_only_usd"] is not None  # type: ignore[index]
