"""Submitting a code task (`repo`, `base`, `include_uncommitted`) to a real daemon, over JSON-RPC
and REST, with real git repositories made for each test.

What is checked is the submit, not the run: the models are slow, so every task stays in its
first state while the test looks at what was stored. A refused submit names the field at fault
(-32602 / HTTP 422) and stores nothing; `include_uncommitted` snapshots the user's changes into
a commit while their index and working tree stay byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import DaemonProcess, daemon_on_simulator
from support.git import run_git
from support.simulator import SLOW_MODELS

git = run_git


def make_repo(root: Path) -> Path:
    """A small repository on branch main with two commits (a tag on the first)."""
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "src" / "app.py").write_text("VALUE = 1\n")
    (root / "README.md").write_text("# App\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    git(root, "tag", "v1")
    (root / "src" / "app.py").write_text("VALUE = 2\n")
    git(root, "commit", "-q", "-am", "second")
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with daemon_on_simulator(tmp_path_factory.mktemp("home"), SLOW_MODELS) as d:
        yield d


def _goal() -> str:
    return f"Change the app {uuid.uuid4()}"


def _submit(d: DaemonProcess, **params: Any) -> dict[str, Any]:
    return d.rpc("task/submit", {"goal": params.pop("goal", None) or _goal(), **params})


def _get(d: DaemonProcess, task_id: str) -> dict[str, Any]:
    reply = d.rpc("task/get", {"task_id": task_id})
    assert "result" in reply, reply
    return reply["result"]


def _all_tasks(d: DaemonProcess) -> list[dict[str, Any]]:
    reply = d.rpc("task/list", {"limit": 500})
    return reply["result"]["tasks"]


# --- accepted ---------------------------------------------------------------------------------


def test_a_code_task_is_stored_with_its_repository_and_base_commit(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD").strip()
    reply = _submit(daemon, repo=str(repo))
    assert "result" in reply, reply
    task = _get(daemon, reply["result"]["task_id"])
    assert task["repo"] == str(repo.resolve())
    assert task["code"] == {
        "repo": str(repo.resolve()),
        "repo_given": str(repo),
        "base": "HEAD",
        "base_commit": head,
        "include_uncommitted": False,
        "snapshot_commit": None,
        "result": None,  # not merged yet
        "applied": None,
    }
    (listed,) = [t for t in _all_tasks(daemon) if t["id"] == task["id"]]
    assert listed["repo"] == str(repo.resolve())


def test_base_may_be_any_ref_and_repo_any_path_inside_the_work_tree(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "v1^{commit}").strip()
    link = tmp_path / "link"
    link.symlink_to(repo / "src")  # a symlink to a subdirectory: the top level is stored
    with daemon.http() as h:
        r = h.post("/v1/tasks", json={"goal": _goal(), "repo": str(link), "base": "v1"})
        assert r.status_code == 202, r.text
        task = h.get(f"/v1/tasks/{r.json()['task_id']}").json()
    assert task["code"]["repo"] == str(repo.resolve())
    assert task["code"]["repo_given"] == str(link)
    assert task["code"]["base"] == "v1" and task["code"]["base_commit"] == first


def test_a_text_task_has_no_code_facts(daemon: DaemonProcess) -> None:
    task = _get(daemon, _submit(daemon)["result"]["task_id"])
    assert task["repo"] is None and task["code"] is None


# --- refused ----------------------------------------------------------------------------------


def _refusals(tmp_path: Path, home: Path) -> list[tuple[dict[str, Any], str, str]]:
    """(params, the field named, words of the message) for each kind of bad submit."""
    repo = make_repo(tmp_path / "repo")
    plain = tmp_path / "plain"
    plain.mkdir()
    in_home = make_repo(home / "projects" / "inside")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return [
        ({"repo": str(loop)}, "repo", "cannot be read: Symlink loop"),
        ({"repo": str(tmp_path / ("x" * 300))}, "repo", "cannot be read: [Errno 36]"),
        ({"repo": str(plain)}, "repo", "not a git work tree"),
        ({"repo": str(repo / "README.md")}, "repo", "not a directory"),
        ({"repo": "repo"}, "repo", "absolute"),
        ({"repo": "./" + str(repo)}, "repo", "absolute"),
        ({"repo": str(tmp_path / "missing")}, "repo", "does not exist"),
        ({"repo": str(in_home)}, "repo", "tierd's own home"),
        ({"repo": str(repo) + "\x00x"}, "repo", "control characters"),
        ({"repo": str(repo), "base": "no-such-branch"}, "base", "does not resolve"),
        ({"repo": str(repo), "base": "--output=/tmp/x"}, "base", "not a git ref"),
        ({"repo": str(repo), "base": "v1", "include_uncommitted": True}, "base", "HEAD"),
        ({"base": "main"}, "base", "give repo"),
        ({"include_uncommitted": True}, "include_uncommitted", "give repo"),
    ]


def test_a_bad_repo_or_base_is_refused_naming_the_field_and_nothing_is_stored(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    before = {t["id"] for t in _all_tasks(daemon)}
    for params, field, words in _refusals(tmp_path, daemon.home):
        goal = _goal()
        reply = _submit(daemon, goal=goal, **params)
        assert "error" in reply, (params, reply)
        error = reply["error"]
        assert error["code"] == -32602, (params, error)
        assert error["data"]["field"] == field, (params, error)
        assert words in error["message"] and error["message"].startswith(f"{field}: "), error
        with daemon.http() as h:
            r = h.post("/v1/tasks", json={"goal": goal, **params})
        assert r.status_code == 422, (params, r.text)
        body = r.json()["error"]
        assert body["code"] == -32602 and body["data"]["field"] == field, (params, body)
    assert {t["id"] for t in _all_tasks(daemon)} == before


def test_types_and_sizes_are_checked_by_the_schema(daemon: DaemonProcess, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    for params, field in [
        ({"repo": ""}, "repo"),
        ({"repo": 5}, "repo"),
        ({"repo": "/" + "a" * 5000}, "repo"),
        ({"repo": str(repo), "base": ""}, "base"),
        ({"repo": str(repo), "include_uncommitted": "yes"}, "include_uncommitted"),
        ({"repo": str(repo), "include_uncommitted": 1}, "include_uncommitted"),
    ]:
        reply = _submit(daemon, **params)
        assert reply["error"]["code"] == -32602, (params, reply)
        assert field in str(reply["error"]["data"]), (params, reply)


# --- uncommitted changes ----------------------------------------------------------------------


def _user_state(repo: Path) -> dict[str, Any]:
    """Everything of the user's a task must not change, byte for byte."""
    index = Path(git(repo, "rev-parse", "--git-path", "index").strip())
    index = index if index.is_absolute() else repo / index
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        "diff": git(repo, "diff"),
        "staged": git(repo, "diff", "--cached"),
        "index": hashlib.sha256(index.read_bytes()).hexdigest(),
        "head": git(repo, "rev-parse", "HEAD"),
        "refs": git(repo, "for-each-ref"),
        "stash": git(repo, "stash", "list"),
        "files": files,
    }


def test_include_uncommitted_snapshots_the_changes_and_touches_nothing_of_the_user(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore logs")
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src" / "app.py").write_text("VALUE = 3  # staged\n")
    git(repo, "add", "src/app.py")
    (repo / "README.md").write_text("# App\nunstaged edit\n")
    (repo / "src" / "new.py").write_text("NEW = True\n")  # untracked
    (repo / "debug.log").write_text("ignored\n")
    before = _user_state(repo)

    reply = _submit(daemon, repo=str(repo), include_uncommitted=True)
    assert "result" in reply, reply
    code = _get(daemon, reply["result"]["task_id"])["code"]

    assert _user_state(repo) == before
    assert code["base"] == "HEAD" and code["base_commit"] == head
    assert code["include_uncommitted"] is True
    snapshot = code["snapshot_commit"]
    assert snapshot and snapshot != head
    assert git(repo, "rev-parse", f"{snapshot}^").strip() == head
    assert git(repo, "show", f"{snapshot}:src/app.py") == "VALUE = 3  # staged\n"
    assert git(repo, "show", f"{snapshot}:README.md") == "# App\nunstaged edit\n"
    assert git(repo, "show", f"{snapshot}:src/new.py") == "NEW = True\n"
    assert "debug.log" not in git(repo, "ls-tree", "-r", "--name-only", snapshot)


def test_include_uncommitted_with_a_clean_tree_starts_from_head(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD").strip()
    reply = _submit(daemon, repo=str(repo), include_uncommitted=True)
    code = _get(daemon, reply["result"]["task_id"])["code"]
    assert code["base_commit"] == head and code["snapshot_commit"] is None


# --- idempotency ------------------------------------------------------------------------------


def test_a_retry_must_name_the_same_repository_base_and_snapshot(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    key, goal = f"code-{uuid.uuid4()}", _goal()
    first = _submit(daemon, goal=goal, repo=str(repo), idempotency_key=key)["result"]
    again = _submit(daemon, goal=goal, repo=str(repo), idempotency_key=key)["result"]
    assert again == {**first, "duplicate": True, "state": again["state"]}
    # base given as the default it stands for is the same request
    same = _submit(daemon, goal=goal, repo=str(repo), base="HEAD", idempotency_key=key)
    assert same["result"]["task_id"] == first["task_id"]
    for changed in (
        {"repo": str(repo), "base": "v1"},
        {"repo": str(repo), "include_uncommitted": True},
        {"repo": str(repo / "src")},
        {},
    ):
        reply = _submit(daemon, goal=goal, idempotency_key=key, **changed)
        assert reply["error"]["code"] == -32602, (changed, reply)
        assert reply["error"]["data"]["field"] == "idempotency_key", (changed, reply)
    text_key = f"text-{uuid.uuid4()}"
    _submit(daemon, goal=goal, idempotency_key=text_key)
    reply = _submit(daemon, goal=goal, idempotency_key=text_key, repo=str(repo))
    assert reply["error"]["data"]["field"] == "idempotency_key"
    assert len([t for t in _all_tasks(daemon) if t["goal"] == goal]) == 2


# --- documents --------------------------------------------------------------------------------


def test_the_new_params_and_views_are_documented(daemon: DaemonProcess) -> None:
    with daemon.http() as h:
        spec = h.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    props = schemas["SubmitParams"]["properties"]
    assert {"repo", "base", "include_uncommitted"} <= set(props)
    assert "absolute path of a git work tree" in str(props["repo"])
    assert "HEAD" in str(props["base"])
    assert props["include_uncommitted"]["type"] == "boolean"
    assert "code" in schemas["TaskDetail"]["properties"]
    assert "repo" in schemas["TaskSummary"]["properties"]
    doc = daemon.rpc("rpc/discover")["result"]
    (submit,) = [m for m in doc["methods"] if m["name"] == "task/submit"]
    params = {p["name"]: p for p in submit["params"]}
    assert {"repo", "base", "include_uncommitted"} <= set(params)
    assert not params["repo"]["required"] and not params["base"]["required"]
    defs = doc["components"]["schemas"]
    assert {"TaskCode", "StreamCode", "CommandRun"} <= set(defs)
    assert "files" in defs["StreamCode"]["properties"]


def test_the_daemon_still_serves_a_plain_client(daemon: DaemonProcess) -> None:
    # An older client sends none of the new fields: nothing changes for it.
    with httpx.Client(base_url=daemon.url, timeout=30) as h:
        r = h.post(
            "/v1/tasks",
            json={"goal": _goal()},
            headers={"Authorization": f"Bearer {daemon.token}"},
        )
    assert r.status_code == 202, r.text
