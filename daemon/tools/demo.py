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

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from daemon.tools.demo_run import DemoRun, run_guarded

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


def run_demo(as_json: bool = False, scale: float = DEFAULT_SCALE) -> int:
    """Run the demo; returns the exit status (0 completed, 1 failed, 130 interrupted)."""
    from rich.console import Console

    out = Console(stderr=as_json)  # in --json mode stdout carries the JSON alone

    def body(run: DemoRun) -> int:
        from daemon.tools.simulator import load_scenario

        scenario = load_scenario(SCENARIO)
        _intro(out, scale, quiet=as_json)
        client = run.start(scenario, run.work, demo_config, scale=scale)
        task_id = client.submit(DEMO_GOAL, DEMO_LEAD)["task_id"]
        if not as_json:
            out.print(f"[dim]{run.describe()}; temporary home {run.work}; task {task_id}[/]\n")
        from daemon.cli.views import watch_task

        task = watch_task(client, task_id, quiet=as_json, console=out)
        if as_json:
            print(json.dumps(task, indent=2, default=str))
        else:
            _outro(out, task)
        return 0 if task["state"] == "completed" else 1

    return run_guarded(Path(tempfile.mkdtemp(prefix="tierd-demo-")), body)


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
