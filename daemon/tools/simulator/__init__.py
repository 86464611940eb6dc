"""An OpenAI-compatible model server that answers tierd's roles by a scenario.

Tests, the benchmark and the offline demo need models that are fast, free and deterministic
yet exercise the real path: this is a real HTTP server (FastAPI + uvicorn) speaking the chat
completions protocol, so the real litellm client, timeouts, retries and cancellation are all
exercised. It reads what it is asked from the headers tierd sends with every call:

    X-Tierd-Role     planner | executor | orchestrator
    X-Tierd-Purpose  plan | execute | review | conflicts | fix | merge
    X-Tierd-Task     the task id
    X-Tierd-Stream   the stream id (execute, review, fix)
    X-Tierd-Round    redo round, or plan attempt (int)
    X-Tierd-Step     the call's memo key (recorded, so tests can tell steps apart)

and answers as the scenario says (`scenarios/README.md` describes the file format).

The modules, one idea each:

- `scenario`: the scenario model, its validation and loading (shipped names or files);
- `plans`: generated plan shapes, and plans broken on purpose;
- `calls`: what a request asks, and the call log behind `GET /_sim/stats`;
- `answers`: each role's answer text, as the scenario says;
- `code`: a tool-using executor's answers (calls offering `tools`), scripted per stream;
- `faults`: injected failures (429, 500, timeout, reset, malformed, ...);
- `replies`: the wire format: errors, whole completions, SSE streams, client-gone checks;
- `app`: one call's way from request to answer, and the FastAPI routes;
- `server`: serving it: `tierd simulate`, `serve_simulator`, `SimulatorThread`.

`python -m daemon.tools.simulator [PORT] [SCENARIO] [SCALE]` serves one until Ctrl-C.
"""

from daemon.tools.simulator.app import Simulator, create_sim_app
from daemon.tools.simulator.calls import CallInfo, CallRecord, SimState
from daemon.tools.simulator.scenario import (
    PURPOSES,
    ROLE_OF_PURPOSE,
    ROLES,
    CodeScenario,
    CodeStep,
    FailureRule,
    GeneratedPlan,
    PlanScenario,
    Scenario,
    StreamBehaviour,
    load_scenario,
    scenarios_dir,
)
from daemon.tools.simulator.server import SimulatorThread, run_simulator_cli, serve_simulator

__all__ = [
    "PURPOSES",
    "ROLES",
    "ROLE_OF_PURPOSE",
    "CallInfo",
    "CallRecord",
    "CodeScenario",
    "CodeStep",
    "FailureRule",
    "GeneratedPlan",
    "PlanScenario",
    "Scenario",
    "SimState",
    "Simulator",
    "SimulatorThread",
    "StreamBehaviour",
    "create_sim_app",
    "load_scenario",
    "run_simulator_cli",
    "scenarios_dir",
    "serve_simulator",
]
