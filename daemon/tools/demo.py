"""`tierd demo`: watch a simulated team work an inbound sales lead, offline and for free.

What runs is the real thing except the models: the bundled model simulator (the `sales_lead`
scenario, latencies scaled down) serves an OpenAI-compatible API on a loopback port, and a
real daemon (`tierd serve` in a subprocess, its own temporary TIERD_HOME) reaches it through
litellm. The demo submits the lead over the API, draws the live stream tree from the event
stream, then prints the merged recommendation and the report. Everything it started is
stopped and its temporary home removed on the way out, on Ctrl-C and on SIGTERM as well.

`run_demo(as_json=True)` prints the finished task (with its report) as JSON on stdout and
nothing else there; notes go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from daemon.cli.client import ApiError, Client, DaemonNotRunning
from daemon.home.discovery import read_discovery

#: Model names from litellm's price table, so the report's dollars are real list prices.
PREMIUM_MODEL = "openai/gpt-5"
CHEAP_MODEL = "openai/gpt-5-mini"
ROLE_MODELS = {"orchestrator": PREMIUM_MODEL, "planner": PREMIUM_MODEL, "executor": CHEAP_MODEL}
SCENARIO = "sales_lead"
DEFAULT_SCALE = 0.3

DEMO_GOAL = (
    "Prepare the follow-up for this inbound lead: research the company, draft the "
    "first email to the contact, and assess fit and risk, then give one "
    "recommendation for the account executive."
)

DEMO_LEAD = """\
Inbound lead (website demo request form, received Tuesday 09:14)

Name: Dana Whitfield
Title: Head of Operations
Company: Harbor & Pine Logistics
Email: dana.whitfield@harborpine.example
Phone: +1 614 555 0187
Company size: 201-500 employees
Country / state: United States, Ohio

What would you like to see in the demo?
"We run six warehouses (Ohio, Indiana, Kentucky) and our dock-to-stock time averages about
9 hours, which is hurting us with two large retail customers. I'd like to see how your
receiving module would work with our SAP system. We need to make a decision by the end of Q3."

Which systems do you use today? SAP ECC 6.0 (on premises) for inventory; a home-grown yard
schedule in Excel.
Budget: not yet approved
How did you hear about us? Peer recommendation (LinkedIn)

Public facts gathered by the SDR:
- Regional third-party logistics (3PL) provider headquartered in Columbus, Ohio; ~400 staff.
- Opened two of its six warehouses in the last 18 months (press release, March).
- Job posting for an "SAP S/4HANA migration lead", so a move off ECC is planned next year.
- IT is run by a separate IT director (Marcus Lee), who is not on the form.

Our standing guidance for first emails: no pricing, no guarantees in writing, propose one
clear next step.
"""


class DemoError(RuntimeError):
    """The demo could not set itself up (the message says what went wrong)."""


def demo_config(api_base: str) -> str:
    """config.toml for the demo home: all three roles on the simulator, no API key."""
    lines = ["# Written by `tierd demo`: every role talks to the bundled model simulator.", ""]
    for role, model in ROLE_MODELS.items():
        lines += [
            f"[models.{role}]",
            f'model = "{model}"',
            f'api_base = "{api_base}"',
            'api_key_env = ""',
            "timeout_s = 30.0",
            "max_retries = 3",
            "",
        ]
    return "\n".join(lines)


def daemon_env(home: Path) -> dict[str, str]:
    """The daemon's environment: its own home, offline price table, no provider keys."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["TIERD_HOME"] = str(home)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # The simulator is on loopback: never route it through a proxy from the environment.
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(filter(None, [env.get(var, ""), "127.0.0.1", "localhost"]))
    # Find this very package even when it is not installed (a source checkout).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    return env


@dataclass
class DaemonHandle:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_daemon(home: Path, timeout: float = 60.0) -> DaemonHandle:
    """`tierd serve --port 0` with TIERD_HOME=home; returns once daemon.json names it."""
    log = home / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "serve", "--port", "0"],
            cwd=home,
            env=daemon_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    handle = DaemonHandle(proc, "", "", log)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(
                    f"the daemon exited with status {proc.returncode}:\n" + _log_tail(log)
                )
            info = read_discovery(home / "daemon.json")
            if info is not None and info.pid == proc.pid:
                handle.url, handle.token = info.url, info.token
                return handle
            time.sleep(0.05)
        raise DemoError(f"the daemon did not start within {timeout:.0f}s:\n" + _log_tail(log))
    except BaseException:
        handle.stop()
        raise


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so the clean-up below runs for both."""

    def raise_interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(as_json: bool = False, scale: float = DEFAULT_SCALE) -> int:
    """Run the demo; returns the exit status (0 completed, 1 failed, 130 interrupted)."""
    from rich.console import Console

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from daemon.tools.simulator import SimulatorThread, load_scenario

    out = Console(stderr=as_json)  # in --json mode stdout carries the JSON alone
    sim: SimulatorThread | None = None
    daemon: DaemonHandle | None = None
    client: Client | None = None
    with _sigterm_as_interrupt():
        home = Path(tempfile.mkdtemp(prefix="tierd-demo-"))
        try:
            scenario = load_scenario(SCENARIO)
            _intro(out, scale, quiet=as_json)
            sim = SimulatorThread(scenario, scale=scale).start()
            (home / "config.toml").write_text(demo_config(sim.api_base), encoding="utf-8")
            daemon = start_daemon(home)
            client = Client(daemon.url, daemon.token)
            task_id = client.submit(DEMO_GOAL, DEMO_LEAD)["task_id"]
            if not as_json:
                out.print(
                    f"[dim]daemon at {daemon.url} (pid {daemon.proc.pid}), temporary "
                    f"home {home}; task {task_id}[/]\n"
                )
            from daemon.cli.views import watch_task

            task = watch_task(client, task_id, quiet=as_json, console=out)
            if as_json:
                print(json.dumps(task, indent=2, default=str))
            else:
                _outro(out, task)
            return 0 if task["state"] == "completed" else 1
        except KeyboardInterrupt:
            print(
                "\ntierd demo: interrupted; stopping the daemon and the simulator", file=sys.stderr
            )
            return 130
        except DemoError as exc:
            print(f"tierd demo: {exc}", file=sys.stderr)
            return 1
        except (ApiError, DaemonNotRunning) as exc:  # the daemon refused or died
            tail = _log_tail(daemon.log) if daemon is not None else ""
            print(f"tierd demo: {exc}" + (f"\n{tail}" if tail else ""), file=sys.stderr)
            return 1
        finally:
            # Ctrl-C again during the clean-up must not leave a daemon or a directory behind.
            with _ignore_interrupts():
                if client is not None:
                    client.close()
                if daemon is not None:
                    daemon.stop()
                if sim is not None:
                    sim.stop()
                shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _ignore_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while cleaning up, so the clean-up itself completes."""
    try:
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _intro(out: Any, scale: float, *, quiet: bool) -> None:
    from rich.panel import Panel

    if quiet:
        print(
            f"tierd demo: the models are simulated (scenario {SCENARIO}, latencies x{scale:g});"
            " running the sales-lead example...",
            file=sys.stderr,
        )
        return
    out.print(
        Panel(
            "A premium orchestrator and planner and cheap executors work one inbound sales lead: "
            "research the company, draft the first email, assess fit and risk, then one merged "
            "recommendation.\n\n"
            "[bold]The models are simulated.[/] tierd's bundled model server answers from a "
            f"script (scenario '{SCENARIO}'), with latencies scaled by {scale:g} and generated "
            "token counts; no API key and no network are used. Everything else is real: litellm, "
            "the daemon and its HTTP API, the store, the LangGraph workflow, the governor. Dollars "
            f"are litellm's list prices for {PREMIUM_MODEL} (orchestrator, planner) and "
            f"{CHEAP_MODEL} (executors) applied to the simulated token counts.",
            title="tierd demo",
            title_align="left",
        )
    )


def _outro(out: Any, task: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from daemon.cli.terminal import clean_data
    from daemon.cli.views import print_report_summary, print_streams, result_markdown

    task = clean_data(task)
    out.print()
    if task.get("result"):
        out.print(Panel(result_markdown(task["result"]), title="merged result", title_align="left"))
    if task.get("error"):
        out.print(Text.assemble(("the task failed: ", "red"), task["error"]))
    out.print(Text("streams and the orchestrator's verdicts", style="bold"))
    print_streams(task, out)
    report = task.get("report")
    if report:
        out.print(Text("\nreport", style="bold"))
        print_report_summary(report, out)
    out.print(
        Text(
            "\nThe models were simulated; the orchestration, the API and the "
            "accounting were real. With real models: see `tierd serve` and "
            "config/default.toml.",
            style="dim",
        )
    )
