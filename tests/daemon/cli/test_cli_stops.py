"""The CLI at the human's stopping points, against a real daemon on the simulator: the result
shown where the user is (before approving it too), questions answered and results approved or
rejected inline on a terminal (a real pseudo-terminal), rejections that need a comment and warn
about the last revision, rejection comments in `show`, hints only while they apply, the raw
result for a pipe, and the human's waiting time apart from the work."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.cli import QUICK, TWO, run_tierd
from support.daemon import DaemonProcess, wait_for, write_config
from support.simulator import running_simulator, use_scenario

pytestmark = pytest.mark.slow

#: Both streams ask: the task waits only once neither can go on, with two open questions.
TWO_QUESTIONS = {
    **TWO,
    "streams": {
        "a": {"reply": "question", "question": "Which region?"},
        "b": {"reply": "question", "question": "Which currency?"},
    },
}
ONE_QUESTION = {**TWO, "streams": {"b": {"reply": "question", "question": "Which region?"}}}


tierd = run_tierd


class Env:
    def __init__(self, home: Path, daemon: DaemonProcess, sim: Any) -> None:
        self.home, self.daemon, self.sim = home, daemon, sim

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return tierd(self.home, *args, **kw)

    def submit(self, scenario: dict[str, Any], *args: str) -> str:
        use_scenario(self.sim, scenario)
        proc = self.run("submit", "Write two parts", *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def task(self, task_id: str) -> dict[str, Any]:
        with self.daemon.client() as c:
            return c.get(task_id)

    def wait_state(self, task_id: str, states: set[str]) -> dict[str, Any]:
        return wait_for(lambda: (t := self.task(task_id))["state"] in states and t, 60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("stops-home")
    with running_simulator(TWO) as sim:
        # One revision allowed: the second rejection fails the task.
        write_config(home, sim.url, "[review]\nmax_revisions = 1\n")
        d = DaemonProcess(home).start()
        try:
            yield Env(home, d, sim)
        finally:
            d.stop()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """`tierd ARGS` on a pseudo-terminal, as a person at a terminal runs it."""

    def __init__(self, home: Path, *args: str) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        # 40 rows, 120 columns, as the person's terminal.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TIERD_HOME": str(home), "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", *args],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.raw = b""
        self.seen = 0  # how much of the screen text `expect` has consumed

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the other side closed: the process ended
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, needle: str, timeout: float = 90.0) -> str:
        """Wait until `needle` appears after what was consumed; return the text up to it."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.text.find(needle, self.seen)
            if at >= 0:
                before = self.text[self.seen : at + len(needle)]
                self.seen = at + len(needle)
                return before
            if time.monotonic() > deadline or (
                not self._read(0.2) and self.proc.poll() is not None and not self._read(0.2)
            ):
                raise AssertionError(f"{needle!r} never came; the screen:\n{self.text[-3000:]}")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self, timeout: float = 90.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.1):
            pass
        return self.proc.wait(timeout=5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(env: Env) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        opened.append(Terminal(env.home, *args))
        return opened[-1]

    yield open_
    for t in opened:
        t.close()


def test_on_a_terminal_watch_takes_the_answers_and_the_decision_inline(
    env: Env, terminal: Any
) -> None:
    task_id = env.submit(TWO_QUESTIONS, "--approval")
    tty = terminal("watch", task_id[:12])  # a prefix of the id, as git takes one
    # Both questions, asked in turn, their answers sent together.
    tty.expect("2 questions for you; all answers go together")
    asked = tty.expect("answer> ")
    first = "Which region?" if "Which region?" in asked else "Which currency?"
    time.sleep(1.0)  # the human thinks: time that is theirs, not the team's
    tty.send("EMEA" if first == "Which region?" else "EUR")
    tty.expect("answer> ")
    tty.send("EUR" if first == "Which region?" else "EMEA")
    tty.expect("answered ")
    # The result is shown before the approval is asked for.
    shown = tty.expect("approve (a), reject with a comment (r), or decide later (l)?")
    assert "result for your approval" in shown
    questions = [q for q in env.task(task_id)["questions"]]
    assert {q["answer"] for q in questions} == {"EMEA", "EUR"}
    # A rejection needs a comment; this one asks for the last revision allowed.
    tty.send("r")
    assert "the last revision allowed" in tty.expect("what should change?")
    tty.send("")
    tty.expect("a rejection needs a comment")
    tty.send("r")
    tty.expect("what should change?")
    tty.send("Shorter, please.")
    tty.expect("rejected ")
    # The revision comes back: rejecting it now would fail the task, which is said first.
    tty.expect("result for your approval (revision 1)")
    tty.expect("or decide later (l)?")
    tty.send("r")
    assert "rejecting it fails the task" in tty.expect("reject it and fail the task? (y/N)")
    tty.send("n")
    tty.expect("or decide later (l)?")
    tty.send("a")
    tty.expect("approved ")
    tty.expect("completed: `tierd show")
    assert tty.wait() == 0
    task = env.task(task_id)
    assert task["state"] == "completed"

    # `show` has the rejection and its comment; no hint to act on a finished task.
    shown = env.run("show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "rejected revision 0: Shorter, please." in shown.stdout
    assert "approved revision 1" in shown.stdout
    assert "tierd approve" not in shown.stdout and "answer with" not in shown.stdout

    # The wait for the answers is the human's: apart in the report, out of the work.
    t = task["report"]["time"]
    assert t["human_wait_s"] >= 1.0
    assert t["work_s"] == pytest.approx(t["wall_clock_s"] - t["human_wait_s"], abs=0.01)
    for s in task["report"]["streams"]:
        assert s["waited_s"] >= 1.0, s
        detail = next(d for d in task["streams"] if d["id"] == s["id"])
        elapsed = detail["ended_at"] - detail["started_at"]
        assert s["duration_s"] == pytest.approx(elapsed - s["waited_s"], abs=0.01)
    assert t["sequential_s"] == pytest.approx(
        sum(s["duration_s"] for s in task["report"]["streams"]), abs=0.01
    )
    assert "waiting for you" in shown.stdout


def test_off_a_terminal_watch_shows_the_result_and_exits_4(env: Env) -> None:
    task_id = env.submit(TWO, "--approval")
    env.wait_state(task_id, {"awaiting_approval"})
    proc = env.run("watch", task_id)
    assert proc.returncode == 4, proc.stderr
    task = env.task(task_id)
    # The result to approve is on screen, with the command to approve it.
    assert "result for your approval" in proc.stdout
    assert task["result"].splitlines()[0].lstrip("# ").strip() in proc.stdout
    assert f"tierd approve {task_id}" in proc.stdout
    # Nothing was asked: no prompt off a terminal.
    assert "approve (a)" not in proc.stdout + proc.stderr

    # A rejection without a comment is refused before it reaches the daemon.
    bare = env.run("approve", task_id, "--reject")
    assert bare.returncode == 2 and "--comment" in bare.stderr
    assert env.task(task_id)["state"] == "awaiting_approval"
    assert env.run("approve", "@last").returncode == 0  # @last: the newest task, this one

    done = env.run("watch", task_id)
    assert done.returncode == 0
    assert "result" in done.stdout and task["result"].splitlines()[-1].strip() in done.stdout
    assert done.stdout.endswith("\n")


def test_show_result_prints_the_raw_markdown_for_a_pipe(env: Env) -> None:
    task_id = env.submit(TWO)
    task = env.wait_state(task_id, {"completed"})
    proc = env.run("show", task_id, "--result")
    assert proc.returncode == 0, proc.stderr
    expected = task["result"] if task["result"].endswith("\n") else task["result"] + "\n"
    assert proc.stdout == expected
    assert proc.stderr == ""
    pending = env.submit({**TWO, "latency": {**QUICK, "planner": 60.0}})
    none = env.run("show", pending, "--result")
    assert none.returncode == 1 and "has no result" in none.stderr and none.stdout == ""
    env.run("cancel", pending)


def test_a_canceled_task_shows_its_question_but_no_hint_to_answer_it(env: Env) -> None:
    task_id = env.submit(ONE_QUESTION)
    env.wait_state(task_id, {"input_required"})
    live = env.run("show", task_id)
    assert f"answer with: tierd answer {task_id}" in live.stdout
    assert env.run("cancel", task_id).returncode == 0
    shown = env.run("show", task_id)
    assert "Which region?" in shown.stdout and "never answered" in shown.stdout
    assert "answer with" not in shown.stdout
    watched = env.run("watch", task_id)
    assert watched.returncode == 1
    assert "answer with" not in watched.stdout and "Which region?" not in watched.stdout
