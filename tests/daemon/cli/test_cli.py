"""The `tierd` command line, run as a user runs it (a subprocess) against a real daemon whose
models are the simulator: every command, its `--json` output, its exit codes and messages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ROOT
from support.cli import QUICK, TWO, run_tierd
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator

from daemon import __version__
from daemon.home.discovery import Discovery, read_discovery, write_discovery
from daemon.tools.simulator import load_scenario

pytestmark = pytest.mark.slow

QUESTION = {**TWO, "streams": {"b": {"reply": "question", "question": "Which region?"}}}
SLOW_PLAN = {**TWO, "latency": {**QUICK, "planner": 30.0}}
SALES_LEAD = load_scenario("sales_lead").model_copy(update={"scale": 0.05})


tierd = run_tierd


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    """stdout as JSON: the whole of it, so nothing else may be printed there."""
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


class Env:
    def __init__(self, home: Path, daemon: DaemonProcess, sim: Any) -> None:
        self.home = home
        self.daemon = daemon
        self.sim = sim

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return tierd(self.home, *args, **kw)

    def use(self, scenario: Any) -> None:
        body = scenario.model_dump(mode="json") if hasattr(scenario, "model_dump") else scenario
        httpx.post(f"{self.sim.url}/_sim/scenario", json=body, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("cli-home")
    with running_simulator(SALES_LEAD) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            yield Env(home, d, sim)
        finally:
            d.stop()


def wait_state(env: Env, task_id: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
    client = env.daemon.client()
    try:
        return wait_for(lambda: (t := client.get(task_id))["state"] in states and t, timeout)
    finally:
        client.close()


# --- the happy path ---------------------------------------------------------------------------


def test_status(env: Env) -> None:
    out = as_json(env.run("status", "--json"))
    assert out["version"] == __version__
    assert out["pid"] == env.daemon.proc.pid  # type: ignore[union-attr]
    assert out["url"] == env.daemon.url
    assert set(out["tasks"]) >= {"queued", "running", "completed", "failed"}
    assert out["concurrency"]["ceiling"] >= 1
    text = env.run("status")
    assert text.returncode == 0
    assert f"tierd {__version__} at {env.daemon.url}" in text.stdout
    assert "agents:" in text.stdout


def test_submit_watch_the_sales_lead_then_show_ls_watch(env: Env, tmp_path: Path) -> None:
    env.use(SALES_LEAD)
    lead = tmp_path / "lead.txt"
    lead.write_text("Dana Whitfield, Harbor & Pine Logistics: six warehouses, SAP ECC 6.0.\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".tierd.toml").write_text('[rules]\ninstructions = ["Never quote prices."]\n')
    proc = env.run(
        "submit",
        "Prepare the follow-up for this inbound lead",
        "--context-file",
        str(lead),
        "--project-dir",
        str(project),
        "--watch",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    task = as_json(proc)
    assert task["state"] == "completed"
    assert task["context"] == lead.read_text()
    assert task["options"]["project_dir"] == str(project.resolve())
    assert "submitted " + task["id"] in proc.stderr
    report = task["report"]
    assert {s["id"]: s["verdict"] for s in report["streams"]} == {
        "research": "accept",
        "draft": "accept",
        "fit_risk": "accept",
    }
    assert report["rules"]["rules.instructions"] == ["Never quote prices."]
    assert task["result"].startswith("# Recommendation")

    shown = as_json(env.run("show", task["id"], "--json"))
    assert shown["id"] == task["id"] and shown["result"] == task["result"]
    text = env.run("show", task["id"])
    assert text.returncode == 0
    assert "completed" in text.stdout and "tiering saved" in text.stdout
    assert "fit_risk" in text.stdout and "Harbor & Pine" in text.stdout

    listed = as_json(env.run("ls", "--json"))
    assert task["id"] in [t["id"] for t in listed["tasks"]]
    only_done = as_json(env.run("ls", "--state", "completed", "--json"))
    assert all(t["state"] == "completed" for t in only_done["tasks"])
    assert task["id"] in env.run("ls").stdout

    # Watching a finished task replays it and ends at once, with the task's exit code.
    watched = env.run("watch", task["id"], "--json", timeout=30)
    assert watched.returncode == 0
    assert as_json(watched)["id"] == task["id"]
    tree = env.run("watch", task["id"], timeout=30)
    assert tree.returncode == 0
    for sid in ("research", "draft", "fit_risk"):
        assert sid in tree.stdout
    assert "gpt-5-mini" in tree.stdout and "orchestrator" in tree.stdout
    assert "redo draft" in tree.stdout  # the conflict the orchestrator found


def test_submit_prints_the_id_and_cancel(env: Env) -> None:
    env.use(SLOW_PLAN)
    proc = env.run("submit", "Write two parts")
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()
    assert task_id.startswith("t") and "\n" not in task_id
    wait_state(env, task_id, {"planning"})
    out = as_json(env.run("cancel", task_id, "--json"))
    assert out == {"task_id": task_id, "state": "canceled"}
    again = env.run("cancel", task_id)
    assert again.returncode == 1
    assert "already canceled" in again.stderr
    watched = env.run("watch", task_id)
    assert watched.returncode == 1  # canceled


def test_submit_with_an_idempotency_key_is_safe_to_repeat(env: Env) -> None:
    env.use(SLOW_PLAN)
    first = env.run("submit", "Write two parts", "--idempotency-key", "cli-retry-1")
    again = env.run("submit", "Write two parts", "--idempotency-key", "cli-retry-1")
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    task_id = first.stdout.strip()
    assert again.stdout.strip() == task_id
    other = env.run("submit", "Write three parts", "--idempotency-key", "cli-retry-1")
    assert other.returncode != 0 and "idempotency_key" in other.stderr
    assert as_json(env.run("cancel", task_id, "--json"))["state"] == "canceled"


def test_question_answer_and_approval(env: Env) -> None:
    env.use(QUESTION)
    proc = env.run("submit", "Write two parts", "--approval", "--watch", "--json")
    assert proc.returncode == 4, proc.stderr  # waits for an answer
    task = as_json(proc)
    assert task["state"] == "input_required"
    (question,) = [q for q in task["questions"] if q["answer"] is None]
    tree = env.run("watch", task["id"])
    assert tree.returncode == 4
    assert f"tierd answer {task['id']} {question['id']}" in tree.stdout
    shown = env.run("show", task["id"])
    assert "Which region?" in shown.stdout

    bad = env.run("answer", task["id"], "q-nope", "EMEA")
    assert bad.returncode == 1 and "q-nope" in bad.stderr
    out = as_json(env.run("answer", task["id"], question["id"], "EMEA", "--json"))
    assert out["answered"] == [question["id"]]

    waiting = env.run("watch", task["id"], "--json")
    assert waiting.returncode == 4
    assert as_json(waiting)["state"] == "awaiting_approval"
    assert "tierd approve" in env.run("show", task["id"]).stdout

    rejected = as_json(
        env.run("approve", task["id"], "--reject", "--comment", "Shorter, please.", "--json")
    )
    assert (rejected["task_id"], rejected["decision"]) == (task["id"], "reject")
    # The revision waits for approval again; a replayed awaiting_approval is not mistaken
    # for the current one.
    revised = wait_state(env, task["id"], {"awaiting_approval", "failed"})
    assert revised["state"] == "awaiting_approval"
    approved = env.run("approve", task["id"])
    assert approved.returncode == 0 and f"approved {task['id']}" in approved.stdout
    done = env.run("watch", task["id"], "--json")
    assert done.returncode == 0
    assert as_json(done)["state"] == "completed"
    late = env.run("approve", task["id"])
    assert late.returncode == 1 and "not awaiting_approval" in late.stderr


def test_config_and_rules_go_through_the_daemon(env: Env) -> None:
    out = as_json(env.run("config", "set", "concurrency.ceiling", "4", "--json"))
    assert out == {
        "key": "concurrency.ceiling",
        "value": 4,
        "file": str(env.home / "config.toml"),
        "applied": True,
    }
    assert env.daemon.rpc("daemon/status")["result"]["concurrency"]["ceiling"] == 4
    assert as_json(env.run("config", "get", "concurrency.ceiling", "--json")) == 4
    shown = as_json(env.run("config", "show", "--json"))
    assert shown["concurrency.ceiling"]["source"].startswith("global")
    assert shown["plan.max_streams"] == {"value": 8, "source": "default"}

    assert env.run("rules", "add", "Keep answers short").returncode == 0
    assert env.run("rules", "couple", "auth/", "db/").returncode == 0
    rules = as_json(env.run("rules", "list", "--json"))
    assert rules["instructions"][-1] == "Keep answers short"
    assert ["auth/", "db/"] in rules["coupled"]
    daemon_rules = env.daemon.rpc("config/get", {"key": "rules"})["result"]["value"]
    assert daemon_rules["coupled"] == rules["coupled"]
    text = env.run("rules", "list").stdout
    assert "coupled 1: auth/ + db/" in text and "Keep answers short" in text
    removed = as_json(env.run("rules", "remove", "1", "--coupled", "--json"))
    assert removed["value"] == [] and removed["applied"] is True
    n = len(rules["instructions"])
    assert (
        as_json(env.run("rules", "remove", str(n), "--json"))["value"] == rules["instructions"][:-1]
    )

    # The daemon refuses what it cannot apply; the CLI calls that bad configuration.
    bad = env.run("config", "set", "concurrency.ceiling", "0")
    assert bad.returncode == 2 and "concurrency.ceiling" in bad.stderr
    unknown = env.run("config", "set", "models.planner.modle", "x")
    assert unknown.returncode == 2 and "unknown key 'models.planner.modle'" in unknown.stderr
    assert env.run("config", "set", "concurrency.ceiling", "5").returncode == 0


# --- failures ---------------------------------------------------------------------------------


def test_no_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    for args in (["status"], ["ls", "--json"], ["show", "t1"], ["watch", "t1"]):
        proc = tierd(tmp_path, *args)
        assert proc.returncode == 3, args
        assert "no tierd daemon is running" in proc.stderr
        assert "tierd serve" in proc.stderr
        assert proc.stdout == ""
    # A daemon.json left by a daemon that is gone.
    write_discovery(
        tmp_path / "daemon.json", Discovery("http://127.0.0.1:9", "x" * 43, 2**22 + 7, "0")
    )
    proc = tierd(tmp_path, "status")
    assert proc.returncode == 3 and "is gone" in proc.stderr
    # Config works without a daemon: the file is what the next start reads.
    out = as_json(tierd(tmp_path, "config", "set", "rules.parallelize", "never", "--json"))
    assert out["applied"] is False
    assert 'parallelize = "never"' in (tmp_path / "config.toml").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["nonsense"],
        ["submit"],
        ["show"],
        ["answer", "t1", "q1"],
        ["ls", "--state", "bogus"],
        ["ls", "--limit", "0"],
        ["demo", "--scale", "-1"],
        ["serve", "--port", "70000"],
        ["rules", "remove", "zero"],
        ["config"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = tierd(tmp_path, *args)
    assert proc.returncode == 2
    assert "usage: tierd" in proc.stderr
    assert proc.stdout == ""


def test_refusals_from_the_daemon(env: Env, tmp_path: Path) -> None:
    proc = env.run("show", "t-no-such-task")
    assert proc.returncode == 1
    assert "no task with id 't-no-such-task'" in proc.stderr
    assert env.run("watch", "t-no-such-task").returncode == 1
    missing = env.run("submit", "x", "--context-file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read --context-file" in missing.stderr
    no_dir = env.run("submit", "x", "--project-dir", str(tmp_path / "nope"))
    assert no_dir.returncode == 2 and "--project-dir" in no_dir.stderr
    blank = env.run("submit", "   ")
    assert blank.returncode == 1 and "goal" in blank.stderr


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with the shipped defaults (OpenAI models) and no OPENAI_API_KEY."""
    home = tmp_path_factory.mktemp("keyless-home")
    d = DaemonProcess(home)
    d.env.pop("OPENAI_API_KEY", None)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_missing_api_key_is_refused_before_any_task_exists(keyless: DaemonProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = tierd(keyless.home, "submit", "Draft a launch plan", env=env)
    assert proc.returncode == 1
    assert "OPENAI_API_KEY" in proc.stderr
    assert "not submitted" in proc.stderr and "tierd serve" in proc.stderr
    assert proc.stdout == ""
    assert as_json(tierd(keyless.home, "ls", "--json"))["tasks"] == []
    assert sum(as_json(tierd(keyless.home, "status", "--json"))["tasks"].values()) == 0


def test_a_daemon_of_another_version_says_so(keyless: DaemonProcess) -> None:
    path = keyless.home / "daemon.json"
    info = read_discovery(path)
    assert info is not None
    write_discovery(path, dataclasses.replace(info, version="0.0.1-old"))
    try:
        proc = tierd(keyless.home, "status", "--json")
        assert proc.returncode == 0
        assert "the running daemon is tierd 0.0.1-old" in proc.stderr
        assert "restart the daemon" in proc.stderr
        assert as_json(proc)["version"] == __version__  # stdout is still only the JSON
    finally:
        write_discovery(path, info)


# --- fast start -------------------------------------------------------------------------------

IMPORT_PROBE = """
import contextlib, io, json, sys
from daemon.cli.main import main
codes = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        codes.append(main(argv))
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_client_commands_import_neither_litellm_nor_langgraph(env: Env) -> None:
    env.use(TWO)
    task_id = env.daemon.client().submit("Write two parts")["task_id"]
    wait_state(env, task_id, {"completed"})
    commands = [
        ["status"],
        ["status", "--json"],
        ["ls"],
        ["show", task_id],
        ["watch", task_id],
        ["config", "show"],
        ["rules", "list"],
        ["cancel", task_id],
    ]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, json.dumps(commands)],
        cwd=ROOT,
        env={**os.environ, "TIERD_HOME": str(env.home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["codes"] == [0, 0, 0, 0, 0, 0, 0, 1], time.monotonic() - started
    heavy = [
        m
        for m in out["modules"]
        if m.split(".")[0] in {"litellm", "langgraph", "langchain_core", "openai", "httpx"}
    ]
    assert heavy == []
