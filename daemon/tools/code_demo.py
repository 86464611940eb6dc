"""`tierd demo --code`: watch a simulated team add a feature to a real repository, offline.

A small Python project (a shop: carts, a catalog, their pytest tests) is written to a temporary
directory and committed with git. The bundled model simulator plays the models from the
`code_demo` scenario; everything else is real: a daemon (`tierd serve` in a subprocess, its own
temporary TIERD_HOME) plans the feature over the repository, runs each stream in its own git
worktree, runs the project's tests itself with pytest under bubblewrap after each round (a
stream that claims success while its tests fail is sent back), merges the accepted branches
and waits for approval. The demo then shows the merged diff, approves it with
`apply: "merge"` (the change lands on the project's branch) and runs pytest in the project to
show it passes. Everything is removed on the way out (on Ctrl-C and SIGTERM too), unless
`keep`.

The models and their config come from the text demo (`daemon.tools.demo`); starting the
daemon, the signals and the clean-up from `daemon.tools.demo_run`.
`run_code_demo(json_out=True)` prints the finished task (`task/get`) as JSON on stdout, with
a `demo` key added: the project's path, what was applied, each stream's tool steps by round
(from the events) and the pytest runs before and after; notes go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.cli.client import Client
from daemon.tools.demo import CHEAP_MODEL, PREMIUM_MODEL, demo_config
from daemon.tools.demo_run import DemoError, DemoRun, run_guarded

__all__ = [
    "GOAL",
    "PROJECT",
    "SCENARIO",
    "code_config",
    "main",
    "make_project",
    "project_test_command",
    "run_code_demo",
    "run_pytest",
    "step_lines",
]

SCENARIO = "code_demo"
#: The prefix of the temporary directory that holds the project and the daemon's home.
TMP_PREFIX = "tierd-code-demo-"
#: Seconds the task may take to reach approval, and the apply to complete it.
TASK_TIMEOUT_S = 120.0
APPLY_TIMEOUT_S = 30.0
ENDED = frozenset({"completed", "failed", "canceled"})

GOAL = (
    "Add discount codes (SAVE10, SAVE25: a share off; FIVEOFF: 5 dollars off, never below "
    "zero) and a printed receipt for a cart (one line per item, the code's discount, the total, "
    "amounts as $1,234.56)."
)

#: The project the team works on: a tiny shop, with tests that pass before the feature.
PROJECT: dict[str, str] = {
    "README.md": "# shop\n\nA tiny shop: carts and a catalog. Run the tests with "
    "`python -m pytest`.\n",
    "AGENTS.md": "Plain Python 3, no dependencies. Amounts are integer cents. Every module "
    "has a docstring; tests live in tests/ and run with `python -m pytest -q`.\n",
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    "pyproject.toml": '[project]\nname = "shop"\nversion = "0.1.0"\n\n'
    '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
    "shop/__init__.py": '"""A tiny shop: carts, a catalog, prices in cents."""\n',
    "shop/cart.py": '''"""A shopping cart: items with a unit price in cents and a quantity."""

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    unit_cents: int
    quantity: int = 1

    @property
    def cents(self) -> int:
        return self.unit_cents * self.quantity


@dataclass
class Cart:
    items: list[Item] = field(default_factory=list)

    def add(self, name: str, unit_cents: int, quantity: int = 1) -> "Cart":
        self.items.append(Item(name, unit_cents, quantity))
        return self

    def total_cents(self) -> int:
        return sum(item.cents for item in self.items)
''',
    "shop/catalog.py": '''"""The catalog: what the shop sells, at what price (cents)."""

PRICES = {"tea": 450, "mug": 1_200, "kettle": 3_900}


class NotSold(KeyError):
    """An article the shop does not sell."""


def price_of(name: str) -> int:
    try:
        return PRICES[name]
    except KeyError:
        raise NotSold(name) from None
''',
    "tests/test_cart.py": """from shop.cart import Cart


def test_an_empty_cart_costs_nothing():
    assert Cart().total_cents() == 0


def test_the_total_counts_quantities():
    assert Cart().add("tea", 450, 2).add("mug", 1_200).total_cents() == 2_100
""",
    "tests/test_catalog.py": """import pytest

from shop.catalog import NotSold, price_of


def test_known_articles_have_a_price():
    assert price_of("kettle") == 3_900


def test_unknown_articles_are_refused():
    with pytest.raises(NotSold):
        price_of("piano")
""",
}


@dataclass
class PytestRun:
    exit_code: int
    summary: str  # pytest's last line, e.g. "13 passed in 0.05s"
    output: str

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "summary": self.summary}


#: pytest with the interpreter running the demo, whose environment may hold pytest plugins
#: the project does not use (tierd's own checkout has several): loading them costs seconds a
#: run, so the project's runs load none.
PYTEST_ARGV = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def project_test_command() -> str:
    """The project's test command as tierd runs it (a shell line, in the sandbox)."""
    argv = shlex.join([sys.executable, *PYTEST_ARGV])
    return f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {argv}"


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    identity = ("-c", "user.name=tierd demo", "-c", "user.email=demo@tierd.invalid")
    done = subprocess.run(
        ["git", *identity, "-C", str(repo), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def make_project(root: Path) -> Path:
    """Write the shop project at `root` and commit it on branch main."""
    for rel, text in PROJECT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "The shop: carts and a catalog")
    return root


def run_pytest(repo: Path) -> PytestRun:
    """The project's tests, run in `repo` as a user would (no sandbox, no bytecode files)."""
    done = subprocess.run(
        [sys.executable, *PYTEST_ARGV],
        cwd=repo,
        env={**os.environ, **PYTEST_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    # pytest's summary is its last line naming an outcome ("11 passed in 0.05s").
    words = (" passed", " failed", " error", " skipped", "no tests ran")
    lines = [ln.strip(" =") for ln in output.splitlines() if any(w in ln for w in words)]
    return PytestRun(done.returncode, lines[-1] if lines else f"exit {done.returncode}", output)


def code_config(api_base: str) -> str:
    """config.toml of the demo home: the text demo's models, plus the project's test command,
    approval required, and a quick scheduler."""
    return "\n".join(
        [
            demo_config(api_base),
            "[code]",
            f"test_command = {json.dumps(project_test_command())}",
            "",
            "[review]",
            'approval = "required"',
            "",
            "[concurrency]",
            "interval_ms = 100",
            "",
        ]
    )


def _preflight(workdir: Path) -> None:
    """The demo needs pytest for its project and bubblewrap for the sandbox: say which."""
    if importlib.util.find_spec("pytest") is None:
        raise DemoError(
            f"the code demo runs its project's tests with pytest, which {sys.executable} "
            "cannot import: install the package 'pytest' (pip install pytest)"
        )
    from daemon.engine.code.sandbox import SandboxPolicy, SandboxUnavailable, check_sandbox

    if shutil.which("bwrap") is None:
        raise DemoError(
            "the code demo runs the project's tests in tierd's sandbox, which needs the "
            "package 'bubblewrap' (no 'bwrap' on PATH; e.g. apt-get install -y bubblewrap)"
        )
    try:
        asyncio.run(check_sandbox(SandboxPolicy(timeout_s=30.0), workdir))
    except SandboxUnavailable as exc:
        raise DemoError(str(exc)) from None


def _wait_state(
    client: Client, task_id: str, states: frozenset[str] | set[str], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(task_id)
        if task["state"] in states or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def _events(client: Client, task_id: str) -> list[dict[str, Any]]:
    """Every event of the task so far (its stream ends once they are sent)."""
    return list(client.events(task_id, follow=False, timeout=30))


@dataclass
class _Run:
    """What one run of the demo produced, for the printing at the end."""

    repo: Path
    task: dict[str, Any]
    events: list[dict[str, Any]]
    diff: dict[str, Any] | None = None
    applied: dict[str, Any] | None = None
    before: PytestRun | None = None
    after: PytestRun | None = None


def _drive(client: Client, run: _Run, out: Any, json_out: bool) -> int:
    """From submit to the final pytest run; returns the exit status."""
    from daemon.cli.views import watch_task

    task_id = client.submit(GOAL, repo=str(run.repo))["task_id"]
    if not json_out:
        out.print(f"[dim]task {task_id}; the live view follows it until it needs you[/]\n")
    run.task = watch_task(client, task_id, quiet=json_out, console=out)
    if run.task["state"] != "awaiting_approval":
        run.task = _wait_state(client, task_id, {"awaiting_approval", *ENDED}, TASK_TIMEOUT_S)
    run.events = _events(client, task_id)
    if run.task["state"] != "awaiting_approval":
        return 1
    run.diff = client.rpc("task/diff", {"task_id": task_id})
    if not json_out:
        _show_work(out, run)
    decided = client.rpc(
        "task/approve", {"task_id": task_id, "decision": "approve", "apply": "merge"}
    )
    run.applied = decided.get("applied")
    run.task = _wait_state(client, task_id, ENDED, APPLY_TIMEOUT_S)
    run.after = run_pytest(run.repo)
    if not json_out:
        _show_applied(out, run)
    ok = run.task["state"] == "completed" and run.after.exit_code == 0
    return 0 if ok else 1


def run_code_demo(json_out: bool, keep: bool = False) -> int:
    """Run the code demo; returns the exit status (0 done and the project's tests pass, 1
    failed, 130 interrupted). `keep` leaves the temporary directory (project and daemon home)."""
    from rich.console import Console

    out = Console(stderr=json_out)  # in --json mode stdout carries the JSON alone

    def body(demo: DemoRun) -> int:
        from daemon.tools.simulator import load_scenario

        home, repo = demo.work / "home", demo.work / "shop"
        demo.notes.append(f"(project: {repo})")
        home.mkdir()
        _preflight(demo.work)
        scenario = load_scenario(SCENARIO)
        run = _Run(make_project(repo), {}, [])
        run.before = run_pytest(repo)
        _intro(out, run, quiet=json_out)
        client = demo.start(scenario, home, code_config)
        if not json_out:
            out.print(f"[dim]{demo.describe()}, home {home}[/]")
        status = _drive(client, run, out, json_out)
        if json_out:
            print(json.dumps(_json_doc(run, keep), indent=2, default=str))
        elif status:
            _show_failure(out, run)
        return status

    return run_guarded(Path(tempfile.mkdtemp(prefix=TMP_PREFIX)), body, keep=keep)


def _json_doc(run: _Run, keep: bool) -> dict[str, Any]:
    """The finished task, with what the demo itself did beside it."""
    return {
        **run.task,
        "demo": {
            "repo": str(run.repo),
            "kept": keep,
            "applied": run.applied,
            "steps": step_lines(run.events),
            "pytest_before": run.before.as_dict() if run.before else None,
            "pytest_after": run.after.as_dict() if run.after else None,
        },
    }


# --- what the text mode prints ----------------------------------------------------------------


def _intro(out: Any, run: _Run, *, quiet: bool) -> None:
    from rich.panel import Panel

    before = run.before.summary if run.before else "?"
    if quiet:
        print(
            f"tierd demo --code: the models are simulated (scenario {SCENARIO}); a real "
            f"repository at {run.repo} (pytest before: {before}), real git, pytest and sandbox...",
            file=sys.stderr,
        )
        return
    out.print(
        Panel(
            "A team adds discount codes and a printed receipt to a tiny Python shop: a tests "
            "stream first, then two implementation streams in parallel on disjoint files, then "
            "one that builds on both. After each round tierd runs the project's tests itself "
            "(pytest, in a bubblewrap sandbox, on that stream's git worktree): a stream whose "
            "tests fail goes back to its coder, whatever it claims. The accepted branches are "
            "merged, the merged tests run, and the result waits for your approval.\n\n"
            "[bold]The models are simulated[/] (scenario "
            f"'{SCENARIO}': scripted tool calls, no API key, no network); the repository, git, "
            "the sandbox, pytest, the daemon and its API are real. Prices: "
            f"{PREMIUM_MODEL} (orchestrator, planner), {CHEAP_MODEL} (executors).",
            title="tierd demo --code",
            title_align="left",
        )
    )
    out.print(f"project [bold]{run.repo}[/]: {len(PROJECT)} files, one commit; pytest: {before}")


def step_lines(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each stream's rounds from its events, one line a round: its tool steps, then how the
    round ended ('read_file a.py, run_command exit 1, finish -> sent back: the tests fail')."""
    from daemon.cli.terminal import clean_data

    rounds: dict[str, list[list[str]]] = {}
    for ev in clean_data(events):
        data = ev.get("data") or {}
        sid = data.get("stream_id")
        if not isinstance(sid, str):
            continue
        mine = rounds.setdefault(sid, [[]])
        if ev.get("type") == "tool.step":
            mine[-1].append(_step_word(data))
        elif ev.get("type") == "stream.state" and data.get("verdict") == "redo" and mine[-1]:
            mine[-1].append(f"-> sent back: {data.get('reason') or 'redo'}")
            mine.append([])
        elif ev.get("type") == "stream.state" and data.get("state") == "accepted":
            mine[-1].append("-> accepted")
    return {
        sid: [f"round {i + 1}: " + _join(steps) for i, steps in enumerate(rs) if steps]
        for sid, rs in rounds.items()
        if any(rs)
    }


def _join(words: list[str]) -> str:
    text = ""
    for word in words:
        text += (" " if word.startswith("->") else ", ") + word if text else word
    return text


def _step_word(data: dict[str, Any]) -> str:
    word = str(data.get("tool") or "?")
    if data.get("tool") == "run_command":
        word += f" exit {data.get('exit_code')}"
    elif data.get("ok") is False:
        word += " refused"
    elif data.get("path") and data.get("path") != ".":
        word += f" {data['path']}"
    return word


def _show_work(out: Any, run: _Run) -> None:
    from rich.table import Table
    from rich.text import Text

    from daemon.cli.code_views import print_code
    from daemon.cli.diff import stat_lines
    from daemon.cli.show import print_streams

    out.print(Text("\ntool steps, as each executor made them (and tierd's verdicts)", style="bold"))
    table = Table(box=None, show_header=False, padding=(0, 1))
    table.add_column("stream", style="bold", no_wrap=True)
    table.add_column("steps")
    for sid, lines in step_lines(run.events).items():
        for i, line in enumerate(lines):
            table.add_row(Text(sid if i == 0 else ""), Text(line))
    out.print(table)
    out.print(Text("\nstreams and the orchestrator's verdicts", style="bold"))
    print_streams(run.task, out)
    out.print(Text("\nwhat each stream did in its worktree", style="bold"))
    print_code(run.task, out)
    result = (run.task.get("code") or {}).get("result") or {}
    tests = result.get("tests") or {}
    out.print(
        Text(
            f"\nmerged into {result.get('branch', '?')}; tierd's test run on the merged result: "
            f"exit {tests.get('exit_code', '?')}",
            style="bold",
        )
    )
    if run.diff is not None:
        out.print(Text("\nthe diff (task/diff)", style="bold"))
        for line in stat_lines(run.diff):
            out.print(Text(line))
    out.print(Text("\napproving it with apply = merge ...", style="bold"))


def _show_applied(out: Any, run: _Run) -> None:
    from rich.text import Text

    applied = run.applied or {}
    out.print(
        Text(
            f"applied: {applied.get('how', '?')} into branch {applied.get('branch', '?')} as "
            f"commit {str(applied.get('commit') or '?')[:12]}; the task is {run.task['state']}"
        )
    )
    log = _git(run.repo, "log", "--oneline", "--graph", "-n", "12")
    for line in log.splitlines():
        out.print(Text(f"  {line}", style="dim"), no_wrap=True, overflow="ellipsis")
    after = run.after
    if after is None:
        return
    passed = after.exit_code == 0
    out.print(
        Text.assemble(
            ("\npytest in the project now: ", "bold"),
            (after.summary, "green" if passed else "red"),
            f" (exit {after.exit_code}; before the feature: "
            f"{run.before.summary if run.before else '?'})",
        )
    )
    if not passed:
        for line in after.output.splitlines()[-20:]:
            out.print(Text(f"  {line}"))
    out.print(
        Text(
            "\nThe models were simulated; the repository, git, the sandbox, pytest and the "
            "daemon were real. Try it on your own repository: `tierd submit GOAL --repo .`.",
            style="dim",
        )
    )


def _show_failure(out: Any, run: _Run) -> None:
    from rich.text import Text

    task = run.task
    out.print(Text.assemble(("the demo did not finish: ", "red"), f"task {task.get('state')}"))
    if task.get("error"):
        out.print(Text(str(task["error"])))


def main(argv: list[str] | None = None) -> int:
    """`python -m daemon.tools.code_demo [--json] [--keep]` (the same as `tierd demo --code`)."""
    p = argparse.ArgumentParser(
        prog="tierd demo --code",
        description="watch a simulated team add a feature to a real repository",
    )
    p.add_argument("--json", action="store_true", help="print the finished task as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary project and home")
    args = p.parse_args(argv)
    return run_code_demo(args.json, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
