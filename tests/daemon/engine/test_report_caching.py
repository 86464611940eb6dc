"""Prompt caching end to end: a daemon process, litellm over real HTTP, the simulator caching
prompts as OpenAI does. A task's reviews start with the same bytes (the shared system text and
the task's material, then the same review instructions), so every review after the first is
served a cached prefix: the report counts those tokens and prices them at the cached rate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.daemon import DaemonProcess, wait_for, write_config
from support.plans import stream
from support.simulator import calls, running_simulator

from roles.models.costs import cost_of

pytestmark = pytest.mark.slow

LIVE = {"completed", "failed", "canceled", "input_required", "awaiting_approval"}
FOUR = {
    "latency": {"planner": 0.02, "orchestrator": 0.02, "executor": 0.05},
    "plan": {"streams": [stream("a"), stream("b"), stream("c", ["a"]), stream("d", ["b"])]},
}
# The developer's standing rules: part of every premium prompt's shared prefix. Long enough
# (with the system text and the review instructions) for a prefix of 1,024 tokens or more, the
# least OpenAI caches.
RULES = [
    f"Rule {i}: every claim about a shipment, a warehouse or a carrier names its source, the "
    "date it was checked and the person who confirmed it; estimates say how they were made."
    for i in range(24)
]


def test_the_report_shows_cached_tokens_and_what_caching_saved(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("home")
    extra = f"[rules]\ninstructions = {json.dumps(RULES)}\n"
    with running_simulator(FOUR) as sim:
        write_config(home, sim.url, extra)
        d = DaemonProcess(home).start()
        try:
            client = d.client()
            task_id = client.submit("Write a short market note")["task_id"]
            task: dict[str, Any] = wait_for(
                lambda: (t := client.get(task_id))["state"] in LIVE and t, 90.0
            )
            reviews = calls(sim.url, purpose="review")
        finally:
            d.stop()
    assert task["state"] == "completed", task["error"]
    # The review verdicts are what the scenario scripts: caching changes no judgement.
    assert [s["verdict"] for s in task["report"]["streams"]] == ["accept"] * 4
    # Every review after the first found the prefix the first one left in the cache.
    cached = sorted(r["cached_tokens"] for r in reviews)
    assert len(reviews) == 4 and cached[0] == 0
    assert all(c >= 1024 and (c - 1024) % 128 == 0 for c in cached[1:])
    report = task["report"]
    usage, cost = report["usage"], report["cost"]
    total = sum(r["cached_tokens"] for r in calls_of(reviews))
    assert usage["per_purpose"]["review"]["cached_tokens"] == total > 0
    assert usage["total"]["cached_tokens"] >= total
    assert cost["cached_tokens"] == usage["total"]["cached_tokens"]
    # Cached input is billed at a tenth of the input rate (gpt-5: $1.25 and $0.125 per M).
    assert cost["total_usd"] < cost["uncached_usd"]
    assert cost["caching_saved_usd"] == pytest.approx(cost["uncached_usd"] - cost["total_usd"])
    saved = sum(
        (cost_of(r["prompt_tokens"], 0, "openai/gpt-5") or 0.0)
        - (cost_of(r["prompt_tokens"], 0, "openai/gpt-5", r["cached_tokens"]) or 0.0)
        for r in reviews
    )
    assert cost["caching_saved_usd"] >= saved * 0.999
    # Premium-only is priced with the same cached tokens, and is cheaper than without them.
    assert cost["premium_only_usd"] < cost["premium_only_uncached_usd"]


def calls_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of answered calls (status 200)."""
    return [r for r in records if r["status"] == 200]
