"""Finding things fast from the command line, against a real daemon: a unique prefix of a task
id everywhere (CLI, REST, events), `@last`, an ambiguous prefix answered with the candidates,
`ls --needs-me` and repeated `--state`; bare `tierd` and `tierd rules`, and "did you mean"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import TWO, daemon_and_simulator, run_tierd
from support.daemon import DaemonProcess, wait_for
from support.simulator import use_scenario

pytestmark = pytest.mark.slow

QUESTION = {**TWO, "streams": {"b": {"reply": "question", "question": "Which region?"}}}


tierd = run_tierd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    with daemon_and_simulator(tmp_path_factory.mktemp("find-home"), TWO) as both:
        yield both


def _submit(d: DaemonProcess, sim: Any, scenario: dict[str, Any], **options: Any) -> str:
    use_scenario(sim, scenario)
    with d.client() as c:
        return str(c.submit("Write two parts", options=options)["task_id"])


def _state(d: DaemonProcess, task_id: str, states: set[str]) -> None:
    with d.client() as c:
        wait_for(lambda: c.get(task_id)["state"] in states, 60)


def test_prefixes_at_last_and_ambiguity(daemon: tuple[DaemonProcess, Any]) -> None:
    import json

    d, sim = daemon
    first = _submit(d, sim, TWO)
    second = _submit(d, sim, TWO)
    _state(d, second, {"completed"})
    home = d.home
    # A unique prefix (the time and two random digits) names one task, in every command.
    shown = tierd(home, "show", second[:-6], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == second
    watched = tierd(home, "watch", first[:-6], "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout)["id"] == first
    # @last: the newest task.
    last = tierd(home, "show", "@last", "--json")
    assert json.loads(last.stdout)["id"] == second
    # Both start with their common prefix: refused, naming both.
    common = next(
        (first[:i] for i in range(len(first)) if first[: i + 1] != second[: i + 1]), first
    )
    assert len(common) >= 4
    both = tierd(home, "show", common)
    assert both.returncode == 1
    assert first in both.stderr and second in both.stderr and "more of the id" in both.stderr
    # The API takes them too: REST, JSON-RPC and the event stream (replayed, then closed).
    with d.http() as h:
        assert h.get(f"/v1/tasks/{second[:-6]}").json()["id"] == second
        assert h.get("/v1/tasks/@last").json()["id"] == second
        ambiguous = h.get(f"/v1/tasks/{common}")
        assert ambiguous.status_code == 422
        assert set(ambiguous.json()["error"]["data"]["candidates"]) >= {first, second}
        events = h.get(f"/v1/tasks/{second[:-6]}/events", timeout=30).text
        assert f'"task_id": "{second}"' in events
    reply = d.rpc("task/get", {"task_id": common})
    assert reply["error"]["code"] == -32602
    assert d.rpc("task/get", {"task_id": first[:-6]})["result"]["id"] == first


def test_ls_needs_me_and_several_states(daemon: tuple[DaemonProcess, Any]) -> None:
    import json

    d, sim = daemon
    asks = _submit(d, sim, QUESTION)
    _state(d, asks, {"input_required"})
    approve = _submit(d, sim, TWO, approval="required")
    _state(d, approve, {"awaiting_approval"})
    done = _submit(d, sim, TWO)
    _state(d, done, {"completed"})
    home = d.home

    needs = json.loads(tierd(home, "ls", "--needs-me", "--json").stdout)["tasks"]
    assert {t["id"] for t in needs} >= {asks, approve}
    assert {t["state"] for t in needs} == {"input_required", "awaiting_approval"}
    text = tierd(home, "ls", "--needs-me")
    assert asks in text.stdout and approve in text.stdout and done not in text.stdout

    both = json.loads(
        tierd(home, "ls", "--state", "completed", "--state", "input_required", "--json").stdout
    )["tasks"]
    assert {t["state"] for t in both} == {"completed", "input_required"}
    assert {asks, done} <= {t["id"] for t in both} and approve not in {t["id"] for t in both}
    ids = [t["id"] for t in both]
    assert ids == sorted(ids, reverse=True)  # newest first, as one list
    for task_id in (asks, approve):
        tierd(home, "cancel", task_id)
    nothing = tierd(home, "ls", "--needs-me")
    assert nothing.returncode == 0 and "no tasks waiting for you" in nothing.stderr


def test_bare_commands_help_and_did_you_mean(tmp_path: Path) -> None:
    bare = tierd(tmp_path)
    assert bare.returncode == 0
    assert "usage: tierd" in bare.stdout and "watch" in bare.stdout and bare.stderr == ""
    rules = tierd(tmp_path, "rules")
    assert rules.returncode == 0 and "parallelize: when-possible" in rules.stdout
    typo = tierd(tmp_path, "stauts")
    assert typo.returncode == 2 and "did you mean 'status'?" in typo.stderr
    action = tierd(tmp_path, "rules", "lsit")
    assert action.returncode == 2 and "did you mean 'list'?" in action.stderr
    far = tierd(tmp_path, "xyzzy")
    assert far.returncode == 2 and "did you mean" not in far.stderr
    helped = tierd(tmp_path, "show", "--help")
    assert "@last" in helped.stdout and "prefix" in helped.stdout
