"""Rules end to end: a real daemon, litellm over HTTP, the simulator's models.

- `rules.parallelize = "never"` runs a task strictly sequentially, whatever the planner plans;
- a plan that splits a coupled group goes back to the planner, and the final plan keeps the
  group in one stream;
- `config/set` reaches the next task without a restart, while a running task keeps the rules
  it started with (`report["rules"]`);
- a project's `.tierd.toml` and a task's options layer over the global file;
- bad keys and values are refused over JSON-RPC (-32602) and REST (422), naming the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from support import PREMIUM
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import calls, running_simulator, use_scenario

from roles.calls import CallOutput
from roles.model_caller import ModelCaller
from roles.models.gateway import ModelTier
from roles.plan.schema import Plan
from roles.plan.validator import PlanRules, validate_plan
from roles.planner import make_plan
from roles.prompts import PromptRules

pytestmark = pytest.mark.slow

DONE = {"completed", "failed", "canceled", "input_required", "awaiting_approval"}
GOAL = "Prepare the quarterly access review"


def stream(id_: str, ownership: list[str], deps: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Stream {id_}",
        "job": f"Do part {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": ownership,
        "depends_on": deps or [],
        "acceptance_check": "It is there.",
    }


def independent(latency: float) -> dict[str, Any]:
    """Three independent streams: the planner always proposes to run them in parallel."""
    return {
        "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": latency},
        "plan": {"streams": [stream("a", ["a/"]), stream("b", ["b/"]), stream("c", ["c/"])]},
    }


#: The planner splits auth/ and db/ across two streams ...
SPLIT = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1},
    "plan": {"streams": [stream("auth", ["auth/"]), stream("db", ["db/"]), stream("ui", ["ui/"])]},
}
#: ... and, told why, keeps them together.
WHOLE = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1},
    "plan": {"streams": [stream("core", ["auth/", "db/"]), stream("ui", ["ui/"])]},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    home = tmp_path_factory.mktemp("home")
    with running_simulator(independent(0.3)) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            yield d, sim
        finally:
            d.stop()


def config_set(d: DaemonProcess, key: str, value: Any) -> dict[str, Any]:
    reply = d.rpc("config/set", {"key": key, "value": value})
    assert "result" in reply, reply
    return reply["result"]


def submit(d: DaemonProcess, goal: str = GOAL, **options: Any) -> str:
    reply = d.rpc("task/submit", {"goal": goal, "options": options})
    assert "result" in reply, reply
    return reply["result"]["task_id"]


def finished(d: DaemonProcess, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    client = d.client()
    task = wait_for(lambda: (t := client.get(task_id))["state"] in DONE and t, timeout)
    assert task["state"] == "completed", task["error"]
    return task


def top_streams(task: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(
        (s for s in task["streams"] if s["parent"] is None), key=lambda s: s["started_at"]
    )


def assert_sequential(task: dict[str, Any]) -> None:
    streams = top_streams(task)
    assert len(streams) == 3
    for before, after in pairwise(streams):
        assert after["started_at"] >= before["ended_at"], (before, after)


def overlapped(task: dict[str, Any]) -> bool:
    streams = top_streams(task)
    return max(s["started_at"] for s in streams) < min(s["ended_at"] for s in streams)


# --- parallelize ---------------------------------------------------------------------------


def test_never_runs_streams_one_after_another_whatever_the_planner_returns(
    env: tuple[DaemonProcess, Any],
) -> None:
    d, sim = env
    use_scenario(sim, independent(0.3))
    config_set(d, "rules.parallelize", "never")
    task = finished(d, submit(d))
    assert_sequential(task)
    # The planner proposed three independent streams; the scheduler chained them.
    planned = task["report"]["plan"]["streams"]
    assert [s["depends_on"] for s in planned] == [[], ["a"], ["b"]]
    # The model calls themselves never overlapped either.
    execs = sorted(calls(sim.url, purpose="execute"), key=lambda c: c["started_wall"])
    assert len(execs) == 3
    for before, after in pairwise(execs):
        assert after["started_wall"] >= before["ended_wall"]
    assert task["report"]["rules"]["rules.parallelize"] == "never"


def test_config_set_reaches_the_next_task_and_a_running_task_keeps_its_rules(
    env: tuple[DaemonProcess, Any],
) -> None:
    d, sim = env
    pid = d.rpc("daemon/status")["result"]["pid"]
    use_scenario(sim, independent(1.0))
    config_set(d, "rules.parallelize", "when-possible")
    config_set(d, "rules.instructions", ["Write for the security team."])
    first = submit(d)
    client = d.client()
    wait_for(lambda: any(s["state"] == "running" for s in client.get(first)["streams"]))

    # While `first` runs: new rules, then a second task. No restart.
    result = config_set(d, "rules.parallelize", "never")
    assert result["source"].startswith("global (")
    config_set(d, "rules.instructions", ["Write for the auditors."])
    assert client.get(first)["state"] == "running"
    second = submit(d)

    one, two = finished(d, first), finished(d, second)
    assert one["report"]["rules"] == {
        "rules.parallelize": "when-possible",
        "rules.coupled": [],
        "rules.instructions": ["Write for the security team."],
    }
    assert overlapped(one)  # it kept running in parallel after the change
    assert two["report"]["rules"] == {
        "rules.parallelize": "never",
        "rules.coupled": [],
        "rules.instructions": ["Write for the auditors."],
    }
    assert_sequential(two)
    assert d.rpc("daemon/status")["result"]["pid"] == pid == d.proc.pid  # type: ignore[union-attr]
    got = d.rpc("config/get", {"key": "rules.parallelize"})["result"]
    assert got["value"] == "never" and got["source"] == f"global ({d.home / 'config.toml'})"
    config_set(d, "rules.instructions", [])


# --- coupled groups ------------------------------------------------------------------------


def test_a_plan_that_splits_a_coupled_group_goes_back_to_the_planner(
    env: tuple[DaemonProcess, Any],
) -> None:
    d, sim = env
    config_set(d, "rules.parallelize", "when-possible")
    with d.http() as h:  # REST, for a change
        r = h.put("/v1/config", json={"key": "rules.coupled", "value": [["auth/", "db/"]]})
        assert r.status_code == 200, r.text
    # The first plan call gets SPLIT, slowly; while it is in flight the scenario becomes
    # WHOLE (the simulator picks its answer when the call arrives), so the retry gets WHOLE.
    use_scenario(sim, {**SPLIT, "purpose_latency": {"plan": 1.5}})
    task_id = submit(d)
    wait_for(lambda: calls(sim.url, purpose="plan"), timeout=10)
    use_scenario(sim, WHOLE)

    task = finished(d, task_id)
    plan = task["report"]["plan"]
    assert [(s["id"], s["ownership"]) for s in plan["streams"]] == [
        ("core", ["auth/", "db/"]),
        ("ui", ["ui/"]),
    ]
    assert task["report"]["usage"]["per_purpose"]["plan"]["calls"] == 2
    assert [c["round"] for c in calls(sim.url, purpose="plan")] == [1]
    assert task["report"]["rules"]["rules.coupled"] == [["auth/", "db/"]]
    config_set(d, "rules.coupled", [])


async def test_the_planner_is_told_which_coupled_group_it_split() -> None:
    """The same round trip through `make_plan` and litellm, with the messages visible."""
    split_plan = Plan.model_validate(SPLIT["plan"])
    assert validate_plan(split_plan, PlanRules()) == []  # only the coupled rule refuses it
    tier = ModelTier(model=PREMIUM, max_retries=0, timeout_s=10)
    sent: list[list[dict[str, str]]] = []
    with running_simulator(SPLIT) as sim:
        tier.api_base = sim.api_base

        # The planner "learns" after its first answer.
        models = ModelCaller({"planner": tier}, "t-coupled", lambda _: use_scenario(sim, WHOLE))

        async def caller(
            role: str, purpose: str, messages: list[dict[str, str]], **kw: Any
        ) -> CallOutput:
            sent.append(messages)
            return await models(role, purpose, messages, **kw)

        coupled = [["auth/", "db/"]]
        outcome = await make_plan(
            caller,
            GOAL,
            "",
            PromptRules(coupled=coupled),
            PlanRules(coupled=coupled),
            max_attempts=3,
        )
    assert outcome.plan is not None and outcome.attempts == 2
    assert [s.id for s in outcome.plan.streams] == ["core", "ui"]
    first_prompt = "\n".join(m["content"] for m in sent[0])
    retry_prompt = "\n".join(m["content"] for m in sent[1])
    assert "auth/" in first_prompt and "db/" in first_prompt  # the rule is stated up front
    assert (
        "coupled areas auth/ and db/ are split across streams 'auth' and 'db': put them "
        "in one stream"
    ) in retry_prompt


# --- layers over the API -------------------------------------------------------------------


def test_project_file_and_task_options_layer_over_the_global_file(
    env: tuple[DaemonProcess, Any], tmp_path: Path
) -> None:
    d, sim = env
    use_scenario(sim, independent(0.05))
    config_set(d, "rules.parallelize", "always")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".tierd.toml").write_text(
        '# team rules\n[rules]\nparallelize = "never"\ninstructions = ["Cite the ticket."]\n'
    )

    task = finished(d, submit(d, project_dir=str(project)))
    assert task["report"]["rules"]["rules.parallelize"] == "never"
    assert task["report"]["rules"]["rules.instructions"] == ["Cite the ticket."]
    assert_sequential(task)

    # The task's own options win over the project file.
    task = finished(
        d, submit(d, project_dir=str(project), parallelize="when-possible", coupled=[["x/", "y/"]])
    )
    assert task["report"]["rules"]["rules.parallelize"] == "when-possible"
    assert task["report"]["rules"]["rules.coupled"] == [["x/", "y/"]]
    assert task["report"]["rules"]["rules.instructions"] == ["Cite the ticket."]
    assert [s["depends_on"] for s in task["report"]["plan"]["streams"]] == [[], [], []]

    # A project file may not touch models or keys: refused at submit, naming key and file.
    (project / ".tierd.toml").write_text(
        '[models.executor]\napi_base = "https://collector.example/v1"\n'
        'api_key_env = "AWS_SECRET_ACCESS_KEY"\n'
    )
    reply = d.rpc("task/submit", {"goal": GOAL, "options": {"project_dir": str(project)}})
    assert reply["error"]["code"] == -32602
    assert (
        "'models.executor.api_base' cannot be set in a project's .tierd.toml"
        in (reply["error"]["message"])
    )
    assert f"{project / '.tierd.toml'}, line 2" in reply["error"]["message"]
    assert reply["error"]["data"]["key"] == "models.executor.api_base"
    config_set(d, "rules.parallelize", "when-possible")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, needle",
    [
        (
            "rules.parallelize",
            "sideways",
            '\'rules.parallelize\' must be one of "when-possible" | "always" | "never"',
        ),
        ("rules.nope", 1, "unknown key 'rules.nope'"),
        ("plan.max_streams", "8", "'plan.max_streams' must be an integer"),
        ("plan.max_streams", 500, "'plan.max_streams' must be between 1 and 200"),
        ("rules.coupled", ["auth/", "db/"], "'rules.coupled' must be a list of lists of strings"),
        (
            "concurrency.floor",
            50,
            "'concurrency.floor' (50) must not exceed 'concurrency.ceiling' (5)",
        ),
        ("concurrency.ceiling", 0, "'concurrency.ceiling' must be between 1 and 10000"),
        ("concurrency.reserve_bytes", (1 << 63) - 1, "'concurrency.reserve_bytes' must be "),
        # Unicode digits are digits to str.isdigit() and int(), never a number to tierd.
        ("plan.max_streams", "²", "'plan.max_streams' must be an integer, not '²'"),
        ("review.max_rounds", "١٢", "'review.max_rounds' must be an integer, not '١٢'"),
    ],
)
def test_bad_config_set_is_refused_over_rpc_and_rest(
    env: tuple[DaemonProcess, Any], key: str, value: Any, needle: str
) -> None:
    d, _sim = env
    before = (d.home / "config.toml").read_text()
    reply = d.rpc("config/set", {"key": key, "value": value})
    assert reply["error"]["code"] == -32602, reply
    assert needle in reply["error"]["message"]
    assert reply["error"]["data"]["key"] == key
    with d.http() as h:
        r = h.put("/v1/config", json={"key": key, "value": value})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == -32602
    assert needle in r.json()["error"]["message"]
    assert (d.home / "config.toml").read_text() == before  # nothing written


@pytest.mark.parametrize(
    "key, value",
    [
        ("concurrency.soft", int("9" * 310)),  # float() would overflow
        ("models.executor.timeout_s", -int("9" * 310)),
        ("plan.max_streams", 1 << 64),  # past SQLite's 64-bit INTEGER
        ("concurrency.reserve_bytes", 1 << 63),
    ],
    ids=["310-digits-float-key", "minus-310-digits", "2**64", "2**63"],
)
def test_a_huge_number_in_config_set_is_a_4xx_naming_the_key(
    env: tuple[DaemonProcess, Any], key: str, value: int
) -> None:
    d, _sim = env
    before = (d.home / "config.toml").read_text()
    reply = d.rpc("config/set", {"key": key, "value": value})
    assert reply["error"]["code"] == -32602, reply
    assert key in reply["error"]["message"]
    with d.http() as h:
        r = h.put("/v1/config", json={"key": key, "value": value})
    assert r.status_code == 422, r.text
    assert key in r.json()["error"]["message"]
    assert (d.home / "config.toml").read_text() == before  # nothing written


def test_config_get_over_rpc_and_rest(env: tuple[DaemonProcess, Any]) -> None:
    d, _sim = env
    reply = d.rpc("config/get", {"key": "rules.paralelize"})
    assert reply["error"]["code"] == -32602
    assert "did you mean 'rules.parallelize'" in reply["error"]["message"]
    with d.http() as h:
        r = h.get("/v1/config", params={"key": "rules.nope"})
        assert r.status_code == 422 and "unknown key 'rules.nope'" in r.text
        whole = h.get("/v1/config").json()
    assert set(whole["config"]["rules"]) == {"parallelize", "coupled", "instructions"}
    assert whole["sources"]["review.approval"] == "default"
    assert whole["sources"]["models.planner.model"].startswith("global (")
