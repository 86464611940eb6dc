"""Code tasks in the dashboard, in a real browser (Chromium through playwright) against a real
daemon on the simulator, with real git repositories and tierd's own test runs in bubblewrap:

- a code task submitted from the form (with its repository) shows its merged diff (files with
  +/-, each file's patch as classed lines of text, never markup), the final test run, and each
  stream's verdict and test run; approving with `merge` lands the commit in the repository;
- approving with `merge` over the user's uncommitted edit in a file the result touches shows
  the daemon's refusal naming the file, the edit intact byte for byte and the task still
  waiting; approving with `patch` then shows where the patch is, and it is there;
- attachments chosen in the form travel as base64 with their media type, and a refused one is
  named beside the form.

The code view's screenshot goes to tests/artifacts/dashboard/ (and TIERD_CODE_SHOT, if set).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_kit import (
    ARTIFACTS,
    DESKTOP,
    DashboardDaemon,
    page_errors,
    plan,
    sign_in,
)
from playwright.sync_api import Browser, BrowserContext, Page, expect
from support.code_plans import code_stream, tool
from support.daemon import write_config
from support.git import run_git
from support.simulator import running_simulator, use_scenario

#: The first task waits for the engine to load, and each stream for tierd's own test run: on a
#: busy machine a task takes minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
FAST = {"latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}}
#: Plain pytest: the plugins of tierd's own environment (loaded by default) cost seconds.
TEST_COMMAND = (
    f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider tests"
)
#: A daemon starting on a busy machine (other test daemons loading beside it).
START_S = 120.0
#: The first task waits for the daemon to load its engine (seconds of CPU, more when busy).
FIRST_TASK_S = 180.0
FEATURE_TEST = (
    # The project's own test, written into the repository (not one of ours): it skips until
    # the implementation stream adds the module, so the tests stream's run is not a failure.
    "import pytest\n\n\ndef test_half():\n"
    "    feature = pytest.importorskip('src.feature')\n"
    "    assert feature.half(8) == 4\n"
)
CALC = "def add(a, b):\n    return a + b\n"
#: A line of the change that a renderer taking the diff as HTML would make into markup.
HOSTILE = "# <img src=x onerror=window.__pwned=1> <b>not bold</b> & done"
SCENARIO: dict[str, Any] = {
    **FAST,
    "plan": {
        "streams": [
            code_stream("tests", "tests", ["tests/test_feature.py"]),
            code_stream("impl", "implementation", ["src/feature.py", "src/calc.py"], ["tests"]),
        ]
    },
    "code": {
        "streams": {
            "tests": [
                tool("write_file", path="tests/test_feature.py", content=FEATURE_TEST),
                tool("finish", summary="a test for half()"),
            ],
            # Round 0 claims success with a bug: tierd's own test run sends it back.
            "impl": [
                tool(
                    "write_file",
                    path="src/feature.py",
                    content=f"{HOSTILE}\ndef half(x):\n    return x\n",
                ),
                tool("edit_file", path="src/calc.py", old="a + b", new="b + a"),
                tool("finish", summary="half() added, all tests pass"),
            ],
            "impl@r1": [
                tool("edit_file", path="src/feature.py", old="return x", new="return x // 2"),
                tool("finish", summary="half() fixed"),
            ],
        }
    },
}
CHAT = {**FAST, "plan": plan({"id": "read"})}


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "src").mkdir()
    (root / "tests").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(
        "from src.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture(scope="module")
def bwrap() -> str:
    """tierd's test runs go through bubblewrap: FAIL (never skip) where it is missing."""
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail(
            "bubblewrap is not installed (no 'bwrap' on PATH): code tasks need the package "
            "'bubblewrap' (apt-get install -y bubblewrap)"
        )
    return found


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(SCENARIO) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, sim: Any, bwrap: str
) -> Iterator[DashboardDaemon]:
    home = tmp_path_factory.mktemp("home")
    code = f'[code]\ntest_command = "{TEST_COMMAND}"\n\n[review]\napproval = "required"\n'
    write_config(home, sim.url, code)
    d = DashboardDaemon(home, home / "clock").start(timeout=START_S)
    try:
        yield d
    finally:
        d.cancel_live_tasks()
        d.stop()


@pytest.fixture(scope="module")
def context(browser: Browser, daemon: DashboardDaemon) -> Iterator[BrowserContext]:
    page = sign_in(browser, daemon, DESKTOP)
    yield page.context
    page.context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors = page_errors(page)
    yield page
    page.close()
    assert errors == []


def awaiting(daemon: DashboardDaemon, task_id: str, timeout: float) -> dict[str, Any]:
    task = daemon.wait_state(task_id, "awaiting_approval", "failed", "canceled", timeout=timeout)
    assert task["state"] == "awaiting_approval", task.get("error") or daemon.log_tail()
    return task


def submit_code(daemon: DashboardDaemon, repo: Path, goal: str) -> str:
    with daemon.http() as h:
        answer = h.post("/v1/tasks", json={"goal": goal, "repo": str(repo)})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["task_id"])


def file_block(page: Page, path: str) -> Any:
    return page.locator(f'details.diff-file[data-path="{path}"]')


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-1280x800.png"), full_page=True)
    extra = os.environ.get("TIERD_CODE_SHOT")
    if extra:
        page.screenshot(path=extra, full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name} scrolls sideways at 390 px ({overflow} px)"
    page.screenshot(path=str(ARTIFACTS / f"{name}-390x844.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_a_code_task_shows_its_diff_and_tests_and_merges_from_the_dashboard(
    page: Page, daemon: DashboardDaemon, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, SCENARIO)
    repo = make_repo(tmp_path / "repo")
    page.goto(daemon.url + "/#/new")
    page.get_by_label("Goal").fill("Add half()")
    page.get_by_label("Repository").fill(str(repo))
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url("**/#/tasks/*")
    task_id = page.url.split("#/tasks/")[1]
    task = awaiting(daemon, task_id, FIRST_TASK_S)
    assert task["code"]["repo"] == str(repo.resolve())
    result = task["code"]["result"]
    with daemon.http() as h:
        listed = h.get(f"/v1/tasks/{task_id}/diff", headers={"Accept": "application/json"}).json()

    # Live: the page, open since the submit, shows the result without a reload.
    expect(page.locator('[data-field="task-state"]')).to_have_text("awaiting approval")
    expect(page.locator('[data-field="final-tests"]')).to_have_text("passed", timeout=20_000)
    expect(page.locator('[data-field="result-branch"]')).to_have_text(result["branch"])
    files = page.locator("details.diff-file")
    expect(files).to_have_count(3)
    for f in listed["files"]:
        summary = file_block(page, f["path"]).locator("summary")
        expect(summary).to_contain_text(f"+{f['insertions']}")
        expect(summary).to_contain_text(f"-{f['deletions']}")
    assert sorted(files.evaluate_all("els => els.map(e => e.dataset.path)")) == sorted(
        result["files"]
    )
    # Each file's patch: classed lines of text; what looks like HTML stays text.
    feature = file_block(page, "src/feature.py")
    expect(feature.locator(".line.hunk")).to_have_count(1)
    expect(feature.locator(".line.add", has_text="return x // 2")).to_have_count(1)
    expect(feature.locator(".line.add", has_text="<b>not bold</b>")).to_have_count(1)
    calc = file_block(page, "src/calc.py")
    expect(calc.locator(".line.del")).to_have_text("-    return a + b")
    expect(calc.locator(".line.add")).to_have_text("+    return b + a")
    assert page.locator(".diff img, .diff b").count() == 0
    assert page.evaluate("window.__pwned ?? null") is None
    # Collapsible per file.
    calc.locator("summary").click()
    expect(calc.locator(".patch-body")).to_be_hidden()
    calc.locator("summary").click()
    expect(calc.locator(".line.del")).to_be_visible()
    # Each stream's verdict and tierd's own test run (impl was sent back once).
    impl = page.locator('table.stream-reviews tr[data-stream="impl"]')
    expect(impl.locator('[data-field="verdict"]')).to_contain_text("accept")
    expect(impl.locator('[data-field="verdict"]')).to_contain_text("after 2 rounds")
    expect(impl.locator('[data-field="stream-tests"]')).to_have_text("passed")
    expect(impl).to_contain_text("half() fixed")
    tree_tests = page.locator('li.stream[data-stream="impl"] > article [data-field="tests"]')
    expect(tree_tests).to_have_text("passed")
    page.locator('[data-key="final-tests-output-summary"]').click()
    expect(page.locator("pre.test-output").first).to_contain_text("passed")
    shoot(page, "code-task")

    # Approve, merging into the user's branch: the commit lands, and the page says which.
    page.get_by_label("Merge it into my current branch").check()
    page.get_by_role("button", name="Approve").click()
    applied = page.locator('[data-field="applied"]')
    expect(applied).to_contain_text("Merged into your branch main as commit", timeout=30_000)
    head = run_git(repo, "rev-parse", "HEAD").strip()
    expect(applied).to_contain_text(head)
    assert run_git(repo, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:] == [
        task["code"]["base_commit"],
        result["head"],
    ]
    assert (repo / "src" / "feature.py").read_text().endswith("return x // 2\n")
    assert run_git(repo, "status", "--porcelain") == ""
    assert daemon.wait_state(task_id, "completed")["state"] == "completed"


def test_apply_over_an_uncommitted_edit_is_refused_then_a_patch_is_written(
    page: Page, daemon: DashboardDaemon, sim: Any, tmp_path: Path
) -> None:
    use_scenario(sim, SCENARIO)
    repo = make_repo(tmp_path / "repo")
    task_id = submit_code(daemon, repo, "Add half(), carefully")
    awaiting(daemon, task_id, FIRST_TASK_S)
    # The user edits a file the result touches, and does not commit.
    mine = "def add(a, b):\r\n    return a + b  # mine, not committed: é\r\n".encode()
    (repo / "src" / "calc.py").write_bytes(mine)
    head = run_git(repo, "rev-parse", "HEAD").strip()
    status = run_git(repo, "status", "--porcelain")

    # The inbox card offers the same choice.
    page.goto(daemon.url + "/#/inbox")
    card = page.locator(f'article.card[data-task="{task_id}"]')
    expect(card.get_by_label("Leave it on its branch")).to_be_checked()
    expect(card.get_by_role("link", name="Review the diff and the test runs")).to_be_visible()

    page.goto(f"{daemon.url}/#/tasks/{task_id}")
    expect(page.locator('[data-field="final-tests"]')).to_have_text("passed")
    page.get_by_label("Merge it into my current branch").check()
    page.get_by_role("button", name="Approve").click()
    refusal = page.locator(".refusal")
    expect(refusal).to_contain_text("Not applied: your work is as it was")
    expect(refusal).to_contain_text("uncommitted")
    expect(refusal.locator(".refused-files li")).to_have_text(["src/calc.py"])
    assert (repo / "src" / "calc.py").read_bytes() == mine
    assert run_git(repo, "rev-parse", "HEAD").strip() == head
    assert run_git(repo, "status", "--porcelain") == status
    assert daemon.task(task_id)["state"] == "awaiting_approval"
    expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    expect(page.get_by_label("Merge it into my current branch")).to_be_checked()

    # A patch instead: written, and the page says where.
    page.get_by_label("Write a patch file").check()
    page.get_by_role("button", name="Approve").click()
    applied = page.locator('[data-field="applied"]')
    expect(applied).to_contain_text("Written as a patch:", timeout=30_000)
    path = Path(daemon.task(task_id)["code"]["applied"]["path"])
    expect(applied).to_contain_text(str(path))
    assert path.is_file()
    check = subprocess.run(
        ["git", "-C", str(repo), "apply", "--cached", "--check", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert (repo / "src" / "calc.py").read_bytes() == mine
    assert run_git(repo, "rev-parse", "HEAD").strip() == head


LARGE_DIFF = r"""async () => {
    const { diffView, headerPath, LINE_CAP } = await import('/dashboard/assets/js/diff.js');
    const until = async (check) => {
        for (let i = 0; i < 200 && !check(); i += 1) await new Promise((r) => setTimeout(r, 10));
        return check();
    };
    const files = [];
    let patch = "";
    for (let n = 0; n < 40; n += 1) {
        const path = `src/mod ${n}.py`;
        const line = (i) => `+x${i} = "<script>window.__pwned=1</script>"`;
        const body = Array.from({ length: 3000 }, (_, i) => line(i));
        patch += `diff --git a/${path} b/${path}\nnew file mode 100644\n--- /dev/null\n` +
            `+++ b/${path}\n@@ -0,0 +1,3000 @@\n${body.join("\n")}\n`;
        files.push({ path, insertions: 3000, deletions: 0 });
    }
    files.push({ path: "src/cut.py", insertions: 1, deletions: 0 });  // past a cut patch
    const view = diffView({ task_id: "t1", branch: "tierd/t1/_result", base_commit: "a".repeat(40),
        head: "b".repeat(40), files, patch, truncated: true });
    document.body.append(view);
    await new Promise((r) => setTimeout(r, 100));
    const atFirst = { lines: view.querySelectorAll(".line").length,
        open: view.querySelectorAll("details[open]").length };
    const first = view.querySelector("details.diff-file");
    first.open = true;
    await until(() => first.querySelector(".line"));
    const opened = first.querySelectorAll(".line").length;
    const more = first.querySelector("button.show-all");
    const label = more ? more.textContent : null;
    more.click();
    const all = first.querySelectorAll(".line").length;
    const cut = view.querySelector('details.diff-file[data-path="src/cut.py"]');
    cut.open = true;
    await until(() => cut.querySelector(".patch-body").textContent);
    const found = {
        atFirst, opened, label, all, cap: LINE_CAP,
        kinds: [...first.querySelectorAll(".line")].slice(0, 6).map((l) => l.className),
        scripts: view.querySelectorAll("script").length,
        cut: cut.querySelector(".patch-body").textContent,
        callout: view.querySelector(".callout")?.textContent || "",
        quoted: headerPath('diff --git "a/caf\\303\\251 \\"q\\".py" "b/caf\\303\\251 \\"q\\".py"'),
        spaced: headerPath("diff --git a/a b/c.py b/a b/c.py"),
        pwned: window.__pwned ?? null,
    };
    view.remove();
    return found;
}"""


def test_a_large_diff_is_built_lazily_and_only_as_text(page: Page, daemon: DashboardDaemon) -> None:
    page.goto(daemon.url + "/#/tasks")
    found = page.evaluate(LARGE_DIFF)
    # 40 files of 3,005 lines each: nothing is built until a file is opened, then at most
    # LINE_CAP lines of it until "Show all".
    assert found["atFirst"] == {"lines": 0, "open": 0}
    assert found["opened"] == found["cap"] < 3005
    assert found["label"] == "Show all 3,005 lines"
    assert found["all"] == 3005
    assert found["kinds"] == ["line meta"] * 4 + ["line hunk", "line add"]
    assert found["scripts"] == 0 and found["pwned"] is None
    assert "Not in the patch shown here" in found["cut"]
    assert "tierd diff t1" in found["callout"]
    assert found["quoted"] == 'café "q".py'
    assert found["spaced"] == "a b/c.py"


def _attachments_accepted(daemon: DashboardDaemon) -> bool:
    """Whether this daemon's submit knows `attachments` (another part of tierd adds it)."""
    with daemon.http() as h:
        props = h.get("/openapi.json").json()["components"]["schemas"]["SubmitParams"]
    return "attachments" in props.get("properties", {})


def test_the_form_sends_attachments_and_names_a_refused_one(
    page: Page, daemon: DashboardDaemon, sim: Any
) -> None:
    assert _attachments_accepted(daemon), "the daemon's submit takes no attachments yet"
    use_scenario(sim, CHAT)
    table = b"region,budget\nnorth,1200\nsouth,900\n"
    page.goto(daemon.url + "/#/new")
    page.get_by_label("Goal").fill("Summarise the budget table")
    page.get_by_label("Attachments").set_input_files(
        [{"name": "budget.csv", "mimeType": "text/csv", "buffer": table}]
    )
    expect(page.locator("ul.attachment-list li")).to_contain_text("budget.csv")
    with page.expect_request(lambda r: r.url.endswith("/v1/tasks") and r.method == "POST") as sent:
        page.get_by_role("button", name="Submit task").click()
    assert sent.value.post_data_json["attachments"] == [
        {"name": "budget.csv", "media_type": "text/csv", "data": base64.b64encode(table).decode()}
    ]
    page.wait_for_url("**/#/tasks/*")
    daemon.cancel_live_tasks()

    # A type the daemon does not take: refused, named beside the form, and no task made.
    with daemon.http() as h:
        before = len(h.get("/v1/tasks", params={"limit": 500}).json()["tasks"])
    page.goto(daemon.url + "/#/new")
    page.get_by_label("Goal").fill("Run this")
    page.get_by_label("Attachments").set_input_files(
        [{"name": "tool.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00"}]
    )
    page.get_by_role("button", name="Submit task").click()
    problem = page.locator('[data-field="attachments-error"]')
    expect(problem).to_contain_text("tool.exe")
    expect(page.get_by_label("Attachments")).to_have_attribute("aria-invalid", "true")
    assert "#/new" in page.url
    with daemon.http() as h:
        assert len(h.get("/v1/tasks", params={"limit": 500}).json()["tasks"]) == before
