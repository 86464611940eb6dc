"""Code streams on a real multi-node Ray cluster (`[executors] backend = "ray"`).

The cluster is Ray's own, on this machine: a head that takes no stream and worker nodes of
2 CPUs each, each a raylet of its own (`daemon.tools.ray_cluster`). The daemons are real
(`tierd serve`), their models the simulator; the repositories are real git repositories.

- a code task completes on the cluster, each stream on a worker node, and its result (the
  merged tree, the test run) equals the local backend's for the same scenario; nothing is left
  behind: no branch but the result, no snapshot ref, no worktree on the nodes;
- a node killed (SIGKILL of its raylet and everything under it) in the middle of a stream: the
  stream goes on on the other node from its last saved step, with every edit made before the
  kill, each command run once and no saved model call asked again;
- the per-node limit: with a stream needing all of a node's CPUs, no node ever runs two
  streams at once, and the others wait for room instead of failing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.code_plans import COUNTING_CODER, HALF, code_stream, tool
from support.daemon import DaemonProcess, task_of, wait_ended, wait_for, write_config
from support.git import run_git
from support.simulator import calls, running_simulator, use_scenario
from support.store_reader import query

from daemon.tools.ray_cluster import LocalRayCluster, local_ray_cluster

pytestmark = pytest.mark.slow

SECRET = "sk-never-leaves-the-daemon"
FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}
#: Two streams, the second built on the first: it adds a test of half() that the test command
#: runs (so the node's test run must see the first stream's file).
TWO_STREAMS = {
    "latency": FAST,
    "plan": {
        "streams": [
            code_stream("impl", "other", ["src/**"]),
            code_stream("tests", "other", ["tests/**"], ["impl"]),
        ]
    },
    "code": {
        "streams": {
            "impl": [
                tool("write_file", path="src/feature.py", content=HALF),
                tool("read_file", path="src/feature.py"),
                tool("finish", summary="half() added"),
            ],
            "tests": [
                tool(
                    "write_file",
                    path="tests/test_half.py",
                    content="from src.feature import half\n\nassert half(4) == 2\n",
                ),
                tool("run_command", name="test"),
                tool("finish", summary="a test of half()"),
            ],
        }
    },
}
TEST_COMMAND = "if [ -f tests/test_half.py ]; then PYTHONPATH=. python3 tests/test_half.py; fi"
#: One stream, each model answer 0.8 s: the node is killed after its first command.
CODER = COUNTING_CODER
KILLED = {
    "latency": FAST,
    "plan": {"streams": [code_stream("impl", "other", ["src/**"])]},
    "streams": {"impl": {"latency": 0.8}},
    "code": {"streams": {"impl": CODER}},
}


def _three_slow() -> dict[str, Any]:
    """Three independent streams, each a few slow steps (1 s a model answer)."""
    ids = ["a", "b", "c"]
    return {
        "latency": FAST,
        "plan": {"streams": [code_stream(s, "other", [f"{s}/**"]) for s in ids]},
        "streams": {s: {"latency": 1.0} for s in ids},
        "code": {
            "streams": {
                s: [
                    tool("write_file", path=f"{s}/x.txt", content=s),
                    tool("finish", summary=s),
                ]
                for s in ids
            }
        },
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    if shutil.which("bwrap") is None:  # FAIL, never skip (as the code tests)
        pytest.fail("bubblewrap is not installed (no 'bwrap' on PATH): apt-get install bubblewrap")
    with local_ray_cluster(worker_nodes=2, cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(TWO_STREAMS) as s:
        yield s


def start_daemon(
    root: Path, sim: Any, backend: str, address: str = "", extra: str = "", code: str = ""
) -> DaemonProcess:
    home = root / f"home-{backend}"
    home.mkdir(parents=True)
    command = json.dumps(TEST_COMMAND)
    config = f"[code]\nallow_shell = true\ntest_command = {command}\n{code}"
    config += f'[executors]\nbackend = "{backend}"\nray_address = "{address}"\n{extra}'
    write_config(home, sim.url, config, concurrency="ceiling = 8")
    logs = root / f"logs-{backend}"
    logs.mkdir()
    # A model key in the daemon's environment: it must never reach the Ray driver's.
    return DaemonProcess(home, env={"OPENAI_API_KEY": SECRET}, logs=logs).start()


def make_repo(root: Path) -> Path:
    """A user's repository with work in progress (an unstaged edit, an untracked file)."""
    (root / "src").mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src" / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    (root / "src" / "__init__.py").write_text("")
    (root / "README.md").write_text("# Demo\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    (root / "README.md").write_text("# Demo\nuser edit in progress\n")
    (root / "notes.txt").write_text("untracked\n")
    return root


def status(repo: Path) -> str:
    return run_git(repo, "status", "--porcelain", "--untracked-files=all")


def result_tree(repo: Path, task: dict[str, Any]) -> dict[str, str]:
    """The result branch's files and their contents."""
    branch = task["code"]["result"]["branch"]
    names = run_git(repo, "ls-tree", "-r", "--name-only", branch).split()
    return {n: run_git(repo, "show", f"{branch}:{n}") for n in names}


def refs(repo: Path, prefix: str) -> list[str]:
    return run_git(repo, "for-each-ref", "--format=%(refname)", prefix).split()


def node_of(stream: dict[str, Any]) -> str:
    where = str(stream["code"]["worktree"])
    assert where.startswith("ray://"), where
    return where.removeprefix("ray://").split("/", 1)[0]


def run_task(d: DaemonProcess, repo: Path) -> dict[str, Any]:
    reply = d.rpc("task/submit", {"goal": "Add half() and its test", "repo": str(repo)})
    task_id = str(reply["result"]["task_id"])
    done = wait_ended(d, task_id, timeout=120)
    assert done["state"] == "completed", done.get("error")
    return done


def test_a_code_task_on_the_cluster_equals_the_local_backend(
    cluster: LocalRayCluster, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, TWO_STREAMS)
    on_ray = start_daemon(tmp_path, sim, "ray", cluster.address)
    local = start_daemon(tmp_path, sim, "local")
    try:
        ray_repo = make_repo(tmp_path / "repo-ray")
        local_repo = make_repo(tmp_path / "repo-local")
        before = status(ray_repo)
        on_cluster = run_task(on_ray, ray_repo)
        here = run_task(local, local_repo)
        assert on_ray.logs is not None
        log = (on_ray.logs / "daemon.err").read_text()
        driver = re.search(r"started the Ray driver \(pid (\d+)\)", log)
        assert driver is not None, log
        environ = Path(f"/proc/{driver[1]}/environ").read_bytes().split(b"\0")
        assert b"RAY_USAGE_STATS_ENABLED=0" in environ
        assert not [v for v in environ if SECRET.encode() in v or v.startswith(b"OPENAI_")]
    finally:
        on_ray.stop()
        local.stop()
    # Each stream worked on a worker node of the cluster (never the head: it has no CPU).
    workers = {n.node_id for n in cluster.nodes}
    assert {node_of(s) for s in on_cluster["streams"]} <= workers
    assert all(not str(s["code"]["worktree"]).startswith("ray://") for s in here["streams"])
    # The same result: the merged tree, the streams' files and the test runs.
    assert result_tree(ray_repo, on_cluster) == result_tree(local_repo, here)
    assert result_tree(ray_repo, on_cluster)["src/feature.py"] == HALF
    for a, b in zip(
        sorted(on_cluster["streams"], key=lambda s: s["id"]),
        sorted(here["streams"], key=lambda s: s["id"]),
        strict=True,
    ):
        assert a["code"]["files"] == b["code"]["files"]
        assert (a["code"]["test_run"] or {}).get("exit_code") == 0
        assert (a["code"]["test_run"] or {}).get("exit_code") == (b["code"]["test_run"] or {}).get(
            "exit_code"
        )
    assert on_cluster["code"]["result"]["tests"]["exit_code"] == 0
    # The user's work in progress is untouched; only the result's branch is left, no snapshot.
    assert status(ray_repo) == before
    task_id = on_cluster["id"]
    assert refs(ray_repo, "refs/heads/tierd/") == [f"refs/heads/tierd/{task_id}/_result"]
    assert refs(ray_repo, "refs/tierd-snapshots/") == []
    # The nodes' worktrees are gone with their workers.
    leftovers = list(Path("/tmp/tierd-ray").glob(f"{task_id}/*/worktrees/*/*"))
    assert leftovers == []


def test_a_node_killed_mid_stream_loses_nothing(
    cluster: LocalRayCluster, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, KILLED)
    # A setup that makes a file: it runs again on the node the stream moves to, where the
    # coder's restored files must not be taken for what it made.
    setup = 'setup_command = "mkdir -p build && echo made > build/out.txt"\n'
    d = start_daemon(tmp_path, sim, "ray", cluster.address, code=setup)
    try:
        repo = make_repo(tmp_path / "repo")
        before = status(repo)
        reply = d.rpc("task/submit", {"goal": "Add half()", "repo": str(repo)})
        task_id = str(reply["result"]["task_id"])

        def stream() -> dict[str, Any]:
            streams = task_of(d, task_id)["streams"]
            return dict((streams or [{}])[0])

        # Kill the stream's node once its first command was saved, while its next model
        # answer (0.8 s) is on its way.
        wait_for(lambda: (stream().get("code") or {}).get("commands"), timeout=60)
        first = stream()
        dead = node_of(first)
        saved_steps = first["code"]["steps"]
        cluster.kill_node(cluster.node(dead))
        killed_at = time.monotonic()
        done = wait_ended(d, task_id, timeout=120)
        ended_after = time.monotonic() - killed_at
        assert done["state"] == "completed", done.get("error")
        (impl,) = done["streams"]
        # It finished on the other node.
        assert node_of(impl) != dead and node_of(impl) in {n.node_id for n in cluster.nodes}
        assert impl["code"]["steps"] == len(CODER) and saved_steps >= 2
        # Every edit made before the kill is in the result, and each command ran once.
        branch = done["code"]["result"]["branch"]

        def show(path: str) -> str:
            return run_git(repo, "show", f"{branch}:{path}")

        assert show("src/feature.py") == HALF.replace("x // 2", "x // 2  # halved")
        assert show("src/more.py") == "MORE = 1\n"
        assert show("src/count.txt") == "one\ntwo\n"
        assert "build/out.txt" not in run_git(repo, "ls-tree", "-r", "--name-only", branch)
        assert [(c["command"], c["exit_code"]) for c in impl["code"]["commands"]] == [
            ("echo one >> src/count.txt", 0),
            ("echo two >> src/count.txt", 0),
        ]
        # One tool.step event per tool call: none ran twice.
        rows = query(
            d.home,
            "SELECT data_json FROM events WHERE task_id = ? AND type = 'tool.step' ORDER BY id",
            [task_id],
        )
        steps = [json.loads(data) for (data,) in rows]
        assert [(s["step"], s["tool"]) for s in steps] == [
            (i + 1, t["tool"]) for i, t in enumerate(CODER)
        ]
        # No model answer of a saved step was asked for again (only the one in flight at the
        # kill may have been asked twice, its answer never saved).
        asked = Counter(c["step"] for c in calls(sim.url, task_id=task_id) if c.get("step"))
        again = {k for k, n in asked.items() if n > 1}
        assert all(f"code:impl:r0:s{i}" not in again for i in range(saved_steps - 1)), again
        assert status(repo) == before
        assert refs(repo, "refs/tierd-snapshots/") == []
        print(f"the killed node's stream ended {ended_after:.1f}s after the kill; again: {again}")
    finally:
        d.stop()
        cluster.add_node()  # the next test has two worker nodes again


def test_a_node_runs_no_more_streams_than_it_has_room_for(
    cluster: LocalRayCluster, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, _three_slow())
    d = start_daemon(tmp_path, sim, "ray", cluster.address, "ray_stream_cpus = 2.0\n")
    try:
        repo = make_repo(tmp_path / "repo")
        reply = d.rpc("task/submit", {"goal": "Three files", "repo": str(repo)})
        task_id = str(reply["result"]["task_id"])
        seen: list[Counter[str]] = []
        views: list[dict[str, Any]] = []
        while task_of(d, task_id)["state"] not in {"completed", "failed", "canceled"}:
            running = [
                s
                for s in task_of(d, task_id)["streams"] or []
                if s["state"] == "running" and (s.get("code") or {}).get("worktree")
            ]
            seen.append(Counter(node_of(s) for s in running))
            views.append(d.rpc("daemon/status")["result"]["executors"])
            time.sleep(0.1)
        done = task_of(d, task_id)
        assert done["state"] == "completed", done.get("error")
        # Two nodes of 2 CPUs, 2 CPUs a stream: one stream per node at a time, and the third
        # waited for room.
        assert max(max(c.values(), default=0) for c in seen) == 1
        assert max(sum(c.values()) for c in seen) == 2
        assert {node_of(s) for s in done["streams"]} <= {n.node_id for n in cluster.nodes}
        # daemon/status shows the nodes as the placement saw them: the head takes nothing,
        # and a node with a stream had no room for another.
        nodes = [n for v in views for n in v["nodes"] or []]
        assert views[-1]["backend"] == "ray" and views[-1]["address"] == cluster.address
        assert {n["node_id"] for n in nodes} >= {n.node_id for n in cluster.nodes}
        assert all(n["room"] == 0 for n in nodes if n["cpus"] == 0)
        busy = [n for n in nodes if n["streams"] == 1]
        assert busy and all(n["room"] == 0 for n in busy)
        assert max(n["streams"] for n in nodes) == 1
    finally:
        d.stop()


#: A command that runs until it is killed (its argument makes it easy to find).
SLEEP = "sleep 41.25"


def test_a_cancel_stops_the_command_running_on_the_node(
    cluster: LocalRayCluster, sim: Any, tmp_path: Path
) -> None:
    use_scenario(
        sim,
        {
            "latency": FAST,
            "plan": {"streams": [code_stream("impl", "other", ["src/**"])]},
            "code": {
                "streams": {
                    "impl": [
                        tool("run_command", name="shell", command=SLEEP),
                        tool("finish", summary="slept"),
                    ]
                }
            },
        },
    )
    d = start_daemon(tmp_path, sim, "ray", cluster.address)
    try:
        repo = make_repo(tmp_path / "repo")
        reply = d.rpc("task/submit", {"goal": "Sleep", "repo": str(repo)})
        task_id = str(reply["result"]["task_id"])

        def sleeping() -> list[psutil.Process]:
            found = []
            for p in psutil.process_iter(["cmdline"]):
                if p.info["cmdline"] and SLEEP in " ".join(p.info["cmdline"]):
                    found.append(p)
            return found

        wait_for(sleeping, timeout=60)
        d.rpc("task/cancel", {"task_id": task_id})
        done = wait_ended(d, task_id, timeout=30)
        assert done["state"] == "canceled"
        # The command on the node was killed with the run, not left to its time limit.
        wait_for(lambda: not sleeping(), timeout=15)
    finally:
        d.stop()
