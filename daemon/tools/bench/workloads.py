"""What the bench runs: the four workloads, the tiny scenario of the micro-benchmarks, the
models, and the sizes of a quick and a full run.

(a) the sales-lead example, (b) 20 independent streams, (c) a skewed DAG of 20 streams in four
layers, (d) the same DAG with the task option `parallelize = "never"`; and the code workload
(`code_workload.py`: 8 code streams on a generated repository), and the same on a three-node
local Ray cluster beside it (`code_ray.py`, "code-ray"). Latencies are the scenarios'
(executor 1-4 s, premium 2-6 s) times the run's latency scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHEAP",
    "CODE",
    "CODE_RAY",
    "NAMES",
    "PREMIUM",
    "WORKLOADS",
    "BenchSettings",
    "Workload",
    "tiny_scenario",
]

PREMIUM = "openai/gpt-5"
CHEAP = "openai/gpt-5-mini"
#: The shipped scenarios' latencies, before the run's scale (reported with the figures).
SCENARIO_LATENCY = {"executor_latency_s": [1.0, 4.0], "premium_latency_s": [2.0, 6.0]}

LEAD = """Inbound demo request, via the website form.
Company: Harbor & Pine Logistics (regional 3PL, ~400 employees, Columbus, Ohio).
Contact: Dana Whitfield, Head of Operations.
Message: "Our dock-to-stock time averages 9 hours across six warehouses. We run SAP ECC 6.0
and want to know whether your receiving module can help. We decide by the end of Q3."
"""


@dataclass(frozen=True)
class Workload:
    """One task tierd and the baselines run: its goal, context, options and scenario."""

    name: str
    scenario: str
    goal: str
    context: str = ""
    options: dict[str, Any] = field(default_factory=dict)


WORKLOADS = (
    Workload("sales_lead", "sales_lead", "Prepare the follow-up for this inbound lead", LEAD),
    Workload("wide", "wide", "Write a twenty-part onboarding guide for new warehouse staff"),
    Workload("dag", "dag", "Prepare a market-entry analysis for the Nordic region"),
    Workload(
        "dag_never",
        "dag",
        "Prepare a market-entry analysis for the Nordic region",
        options={"parallelize": "never"},
    ),
)


#: The code workload's name (it is no `Workload`: it needs a repository, see code_workload.py).
CODE = "code"
#: The code workload again on a three-node local Ray cluster, compared with the local run
#: (`code_ray.py`); it needs that run: selecting it runs "code" too, and `--skip code` leaves
#: it not run.
CODE_RAY = "code-ray"
#: Every workload's name, as `--only` takes them.
NAMES = (*(w.name for w in WORKLOADS), CODE, CODE_RAY)


def tiny_scenario(width: int) -> dict[str, Any]:
    """Near-zero latencies: for the latency, throughput and scale measurements."""
    return {
        "name": f"tiny-{width}",
        "seed": 3,
        "latency": {"planner": 0.002, "orchestrator": 0.002, "executor": 0.005},
        "completion_tokens": {"planner": 400, "orchestrator": 60, "executor": 150},
        "plan": {
            "summary": "Independent parts.",
            "generate": {"width": width, "pattern": "independent", "kind": "writing"},
        },
    }


@dataclass(frozen=True)
class BenchSettings:
    """The sizes of one run: `for_mode(quick=True)` takes under a minute."""

    quick: bool
    latency_scale: float
    ceiling: int = 20
    latency_tasks: int = 100
    scale_tasks: int = 200
    scale_streams: int = 5
    scale_ceiling: int = 100
    #: Streams in flight at once (`in_flight.py`): tasks of 5 streams, all under one ceiling,
    #: with executor calls this long (a long real answer) so that they all overlap.
    in_flight_tasks: int = 200
    in_flight_latency_s: float = 60.0
    api_clients: int = 50
    api_requests_per_client: int = 100
    status_runs: int = 5
    governor_cycles: int = 12
    idle_s: float = 2.0
    workload_timeout_s: float = 900.0
    #: The code workload: generated modules in its repository, rounds of the git and sandbox
    #: replay, and trivial-command starts per stream and round in each mode.
    code_files: int = 2000
    code_rounds: int = 3
    code_starts: int = 5
    #: Only these workloads (names, "code" and "code-ray" included), without the once-per-run
    #: measurements; empty: everything.
    only: tuple[str, ...] = ()
    #: Workloads left out of the run, which keeps its once-per-run measurements.
    skip: tuple[str, ...] = ()
    #: Where the code workload's repository is made and left; None: a temporary directory.
    code_dir: str | None = None

    @classmethod
    def for_mode(cls, quick: bool) -> BenchSettings:
        if quick:
            return cls(
                quick=True,
                latency_scale=0.035,
                latency_tasks=10,
                scale_tasks=8,
                in_flight_tasks=20,
                in_flight_latency_s=10.0,
                api_requests_per_client=20,
                status_runs=3,
                governor_cycles=3,
                idle_s=0.5,
                workload_timeout_s=120.0,
                code_files=200,
                code_rounds=1,
                code_starts=3,
            )
        return cls(quick=False, latency_scale=0.3)
