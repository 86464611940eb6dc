"""Untrusted text never drives the user's terminal (issue 14 #6).

A goal, a plan's titles, a model's output and its questions can hold terminal control
sequences: `ESC ] 0 ; title BEL` retitles the terminal, `ESC [ 2 J` clears it, NUL and the C1
CSI (U+009B) confuse it. Against a real daemon on the simulator, `tierd show`, `ls` and
`watch` print them neutralised (visible as `\\x1b`, ...), piped and on a terminal (a PTY, where
rich draws the live view), and rich markup in that text is shown, not obeyed.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ROOT
from support.cli import daemon_and_simulator
from support.daemon import DaemonProcess, wait_for

from daemon.cli.terminal import clean, clean_data

#: What an attacker puts in: retitle, clear screen, NUL, C1 CSI, a carriage return, markup.
EVIL = "\x1b]0;PWNED\x07\x1b[2J\x00\x9b31m\r[red]markup[/red]"
SHOWN = clean(EVIL)
#: Raw bytes none of the views may print (the PTY's own output adds only rich's styling).
FORBIDDEN = [b"\x1b]0;", b"\x1b[2J", b"\x00", b"\x07", "\x9b".encode()]

QUICK = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}


def _stream(id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Part {id_} {EVIL}",
        "job": f"Write part {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": [f"part-{id_}/"],
        "acceptance_check": "It is there.",
    }


SCENARIO = {
    "latency": QUICK,
    "plan": {"streams": [_stream("a"), _stream("b")]},
    "streams": {"a": {"output": f"Output of a: {EVIL} end of a."}},
}
ASKING = {
    **SCENARIO,
    "streams": {"b": {"reply": "question", "question": f"Which {EVIL} region?"}},
}


def test_clean_shows_control_characters_and_keeps_text() -> None:
    assert clean("a\tb\nc") == "a\tb\nc"
    assert clean("\x1b[2J\x00\x07\x7f\x9b\r") == "\\x1b[2J\\x00\\x07\\x7f\\x9b\\x0d"
    assert clean("naïve — ünïcødé ✓ 東京") == "naïve — ünïcødé ✓ 東京"
    assert clean_data({"k\x1b": ["\x00", 3, None, {"x": "\x07"}]}) == {
        "k\\x1b": ["\\x00", 3, None, {"x": "\\x07"}]
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    with daemon_and_simulator(tmp_path_factory.mktemp("evil-home"), SCENARIO) as both:
        yield both


def _run_task(d: DaemonProcess, states: set[str]) -> str:
    client = d.client()
    try:
        task_id = str(client.submit(f"Evil goal {EVIL} end")["task_id"])
        wait_for(lambda: client.get(task_id)["state"] in states, 60, 0.1)
        return task_id
    finally:
        client.close()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "NO_COLOR"}}
    return {**env, "TIERD_HOME": str(home), "COLUMNS": "120", "TERM": "xterm-256color"}


def _piped(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        timeout=60,
    )


def _on_a_terminal(home: Path, *args: str) -> tuple[int, bytes]:
    """Run `tierd ARGS` with stdout on a PTY of 120 columns (rich draws as on a terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=ROOT,
        env=_env(home),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
    )
    os.close(slave)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                raise AssertionError(f"tierd {args} printed nothing for 60 s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        code = proc.wait(30)
    return code, bytes(out)


def _assert_neutralised(out: bytes, where: str) -> None:
    for raw in FORBIDDEN:
        assert raw not in out, (where, raw, out[:3000])


@pytest.mark.slow
def test_show_ls_and_watch_print_no_control_sequences(
    daemon: tuple[DaemonProcess, Any],
) -> None:
    d, _ = daemon
    task_id = _run_task(d, {"completed", "failed"})
    for args in (["show", task_id], ["ls"], ["watch", task_id]):
        proc = _piped(d.home, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        _assert_neutralised(proc.stdout + proc.stderr, f"piped {args}")
        # Not even rich's own styling: nothing is a terminal here.
        assert b"\x1b" not in proc.stdout, args
        assert SHOWN.encode() in proc.stdout, (args, proc.stdout[:3000])
    # The live view's stream titles: the markup in them is text, not a colour.
    watched = _piped(d.home, "watch", task_id).stdout.decode()
    assert "[red]markup[/red]" in watched
    # The model's output, in the result.
    assert f"Output of a: {SHOWN} end of a.".encode() in _piped(d.home, "show", task_id).stdout
    # On a terminal, where rich draws the live view and styles everything.
    for args in (["show", task_id], ["ls"], ["watch", task_id]):
        code, out = _on_a_terminal(d.home, *args)
        assert code == 0, (args, out[-2000:])
        _assert_neutralised(out, f"terminal {args}")
        assert b"\\x1b]0;PWNED\\x07" in out, (args, out[:3000])


@pytest.mark.slow
def test_a_models_question_is_shown_neutralised(daemon: tuple[DaemonProcess, Any]) -> None:
    d, sim = daemon
    httpx.post(f"{sim.url}/_sim/scenario", json=ASKING, timeout=10).raise_for_status()
    try:
        task_id = _run_task(d, {"input_required", "failed"})
        shown = _piped(d.home, "show", task_id)
        assert shown.returncode == 0, shown.stderr
        _assert_neutralised(shown.stdout, "show with a question")
        assert f"Which {SHOWN} region?".encode() in shown.stdout
        code, out = _on_a_terminal(d.home, "watch", task_id)
        assert code == 4, out[-2000:]  # waits for the answer
        _assert_neutralised(out, "terminal watch with a question")
        assert b"Which \\x1b]0;PWNED" in out
    finally:
        httpx.post(f"{sim.url}/_sim/scenario", json=SCENARIO, timeout=10).raise_for_status()
