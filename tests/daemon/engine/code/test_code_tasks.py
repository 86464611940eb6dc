"""Code tasks end to end: a real daemon, litellm to the simulator's scripted tool calls, a real
git repository the test makes, real bubblewrap.

The plan has a tests stream and two implementation streams that depend on it and own disjoint
files; the implementation streams run in parallel, each in its own worktree started from the
tests stream's accepted branch. One writes a bug, sees its test fail, fixes it and sees it pass;
one probes its sandbox (no writing outside the worktree, no loopback connection, no API key
variable). A write outside a stream's ownership is refused and the model is told. The planted
key in the user's ignored `.env` (copied in by `.worktreeinclude`) reaches no model call, no
event, no stored row. When the task ends only the streams' result branches are left, and the
user's repository is byte for byte as it was.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.code_plans import PYTEST, code_stream, tool
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, stats
from support.store_reader import query, tables

from daemon.tools.simulator.server import SimulatorThread

pytestmark = pytest.mark.slow

#: The variable the daemon's environment holds a key in: no command may see it.
DAEMON_KEY_ENV = "TIERD_TEST_PROVIDER_KEY"
DAEMON_KEY = "sk-daemon-env-key-77"
AGENTS_MARKER = "AGENTS-MARKER-5150"
TEST_COMMAND = f"{PYTEST} tests"
FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}

# The project's own tests, written into the repository (not ours): each skips until its
# implementation stream adds the module, so the tests stream's run is not a failure.
TESTS_A = (
    "import pytest\n\n\ndef test_double():\n"
    "    feature = pytest.importorskip('src.feature_a')\n"
    "    assert feature.double(4) == 8\n"
)
TESTS_B = (
    "import pytest\n\n\ndef test_triple():\n"
    "    feature = pytest.importorskip('src.feature_b')\n"
    "    assert feature.triple(2) == 6\n"
)


BUGGY_A = "def double(x):\n    return x * 3\n"
FEATURE_B = "def triple(x):\n    return x * 3\n"


def sandbox_probe(repo: Path, port: int) -> str:
    """A shell line reporting what the sandbox let it do (each line "what: outcome")."""
    script = (
        "import os, socket\n"
        "try:\n"
        f"    open({str(repo / '.git' / 'escaped.txt')!r}, 'w').write('x')\n"
        "    print('write: allowed')\n"
        "except OSError: print('write: denied')\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('connect: allowed')\n"
        "except OSError: print('connect: denied')\n"
        f"print('key: ' + ('present' if os.environ.get({DAEMON_KEY_ENV!r}) else 'absent'))\n"
    )
    return f"{sys.executable} -c {shlex.quote(script)}"


def scenario(repo: Path, port: int) -> dict[str, Any]:
    return {
        **FAST,
        "watch": ["sk-planted-secret-4242", AGENTS_MARKER],
        "plan": {
            "summary": "tests first, then two features in parallel",
            "streams": [
                code_stream("tests", "tests", ["tests/test_a.py", "tests/test_b.py"]),
                code_stream("impl_a", "implementation", ["src/feature_a.py"], ["tests"]),
                code_stream("impl_b", "implementation", ["src/feature_b.py"], ["tests"]),
            ],
        },
        "code": {
            "streams": {
                "tests": [
                    tool("read_file", path=".env"),
                    tool("search", pattern="sk-planted", fixed=True),
                    {
                        "calls": [
                            tool("write_file", path="tests/test_a.py", content=TESTS_A),
                            tool("write_file", path="tests/test_b.py", content=TESTS_B),
                        ]
                    },
                    tool("write_file", path="README.md", content="mine\n"),
                    tool("finish", summary="wrote the tests"),
                ],
                "impl_a": [
                    tool("read_file", path="tests/test_a.py"),
                    tool("write_file", path="src/feature_a.py", content=BUGGY_A),
                    tool("run_command", name="test"),
                    tool("edit_file", path="src/feature_a.py", old="x * 3", new="x * 2"),
                    tool("run_command", name="test"),
                    tool("finish", summary="double() added, tests pass"),
                ],
                "impl_b": [
                    tool("write_file", path="src/feature_b.py", content=FEATURE_B),
                    tool("run_command", name="shell", command=sandbox_probe(repo, port)),
                    tool("run_command", name="test"),
                    tool("finish", summary="triple() added"),
                ],
            }
        },
    }


CODE_CONFIG = f"""
[code]
test_command = {json.dumps(TEST_COMMAND)}
allow_shell = true
"""


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(FAST) as s:
        yield s


def start_daemon(home: Path, sim: SimulatorThread, extra: str = CODE_CONFIG) -> DaemonProcess:
    home.mkdir(exist_ok=True)
    write_config(home, sim.url, extra)
    return DaemonProcess(home, env={DAEMON_KEY_ENV: DAEMON_KEY}).start()


def finished(d: DaemonProcess, task_id: str, timeout: float = 90.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = d.rpc("task/get", {"task_id": task_id})["result"]
        return task if task["state"] in {"completed", "failed", "canceled"} else None

    return wait_for(done, timeout=timeout, interval=0.2)


def tierd_branches(git_in: Callable[..., str], repo: Path) -> list[str]:
    return sorted(git_in(repo, "branch", "--list", "tierd/*", "--format=%(refname:short)").split())


def events(home: Path, task_id: str) -> list[dict[str, Any]]:
    """The task's stored events (read from the database once the daemon has stopped)."""
    rows = query(
        home, "SELECT type, data_json FROM events WHERE task_id = ? ORDER BY id", [task_id]
    )
    return [{"type": t, "data": json.loads(data)} for t, data in rows]


def test_a_code_task_runs_streams_in_worktrees_and_leaves_only_result_branches(
    tmp_path: Path,
    user_repo: Path,
    sim: SimulatorThread,
    git_in: Callable[..., str],
    state_of: Callable[[Path], dict[str, bytes]],
    planted_key: str,
    bwrap: str,
) -> None:
    (user_repo / "AGENTS.md").write_text(f"Run the tests. {AGENTS_MARKER}\n")
    git_in(user_repo, "add", "AGENTS.md")
    git_in(user_repo, "commit", "-q", "-m", "agents file")
    head = git_in(user_repo, "rev-parse", "HEAD").strip()
    before = state_of(user_repo)
    sim_port = int(sim.url.rsplit(":", 1)[1])
    from support.simulator import use_scenario

    use_scenario(sim, scenario(user_repo, sim_port))
    d = start_daemon(tmp_path / "home", sim)
    try:
        submitted = d.rpc("task/submit", {"goal": "Add double and triple", "repo": str(user_repo)})
        task_id = submitted["result"]["task_id"]
        task = finished(d, task_id)
    finally:
        d.stop()
    evs = events(tmp_path / "home", task_id)
    assert task["state"] == "completed", task.get("error")
    streams = {s["id"]: s for s in task["streams"]}
    assert {s["state"] for s in streams.values()} == {"accepted"}

    # Each stream worked on its own branch, the dependants from the tests stream's result; the
    # accepted branches are merged on the result's branch, which is all that is left.
    result = f"tierd/{task_id}/_result"
    assert tierd_branches(git_in, user_repo) == [result]
    assert task["code"]["result"]["branch"] == result
    assert "x * 2" in git_in(user_repo, "show", f"{result}:src/feature_a.py")
    assert "x * 3" in git_in(user_repo, "show", f"{result}:src/feature_b.py")
    changed = git_in(user_repo, "diff", "--name-only", head, result).split()
    assert sorted(changed) == [
        "src/feature_a.py",
        "src/feature_b.py",
        "tests/test_a.py",
        "tests/test_b.py",
    ]
    assert streams["impl_a"]["code"]["start_commit"] == streams["tests"]["code"]["head"]

    # The failing test, then the passing one, as tierd ran them (not as the model said).
    code_a = streams["impl_a"]["code"]
    assert [c["exit_code"] for c in code_a["commands"]] == [1, 0]
    assert code_a["branch"] == f"tierd/{task_id}/impl_a"
    assert code_a["files"] == ["src/feature_a.py"] and code_a["insertions"] == 2

    # The sandbox: nothing written outside, no connection, no key variable.
    # Whole lines: the output starts with the command line, which holds every message.
    probe = streams["impl_b"]["code"]["commands"][0]["output"].splitlines()
    assert {"write: denied", "connect: denied", "key: absent"} <= set(probe), probe
    assert not (user_repo / ".git" / "escaped.txt").exists()

    # A write outside the ownership is refused and the model read why.
    refused = [e for e in evs if e["type"] == "tool.step" and e["data"]["tool"] == "write_file"]
    assert any(not e["data"]["ok"] and e["data"]["path"] in (None, "README.md") for e in refused)
    calls = stats(sim.url)["calls"]
    told = [r for c in calls for r in c.get("new_results", []) if "README.md" in r]
    assert any("refused" in r for r in told), told
    assert git_in(user_repo, "show", f"{result}:README.md") == "# Demo\n"

    # The project's instructions reached the planner and the coders.
    with_marker = {c["purpose"] for c in calls if AGENTS_MARKER in c["watched"]}
    assert {"plan", "execute"} <= with_marker

    # The planted key: in no model call, no event, no stored row.
    assert not [c for c in calls if planted_key in c["watched"]]
    assert planted_key not in json.dumps(evs)
    for table in tables(tmp_path / "home"):
        for row in query(tmp_path / "home", f"SELECT * FROM {table}"):
            assert planted_key not in repr(row), table

    # No worktree is left; the user's repository is as it was, byte for byte.
    assert git_in(user_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not any((tmp_path / "home" / "worktrees").glob("*/*"))
    assert state_of(user_repo) == before
