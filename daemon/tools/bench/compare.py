"""One workload run four ways: by tierd (the daemon), by one sequential agent, by a LangGraph
`Send` map-reduce level by level, and by a LangGraph functional-API program that starts each
stream when ready (`baselines.py`).

The baselines replay tierd's task id to the simulator, which draws every call's latency and
tokens from the call's identity: after a reset of its counters each stream costs a baseline
exactly what it cost tierd, so the difference is the scheduling alone.
"""

from __future__ import annotations

import time

from daemon.tools.bench.figures import WorkloadRun
from daemon.tools.bench.harness import BenchError, Session
from daemon.tools.bench.measure import cpu_s, cpu_split
from daemon.tools.bench.workloads import Workload
from roles.plan.schema import Plan

__all__ = ["run_workload"]


async def run_workload(session: Session, wl: Workload) -> WorkloadRun:
    """tierd, then the sequential agent, then LangGraph `Send`, then the LangGraph
    functional program, on the workload's scenario."""
    # The baselines import litellm and langgraph: seconds, so not before they are needed.
    from daemon.tools.bench.baselines import (
        dependency_levels,
        run_functional,
        run_langgraph,
        run_sequential,
    )

    settings = session.s
    session.use(wl.scenario, settings.latency_scale)
    proc = session.proc
    cpu0, split0 = cpu_s(proc), cpu_split(proc)
    tid, submitted = await session.submit(wl.goal, wl.context, wl.options)
    task = await session.wait_task(tid, settings.workload_timeout_s)
    cpu, split1 = cpu_s(proc) - cpu0, cpu_split(proc)
    busy_s = time.time() - submitted
    records = session.records()
    if task["state"] != "completed":
        raise BenchError(f"{wl.name}: the task {task['state']}: {task.get('error')}")
    plan = Plan.model_validate(task["plan"])
    task_settings = task["report"]["settings"]
    tiers = session.tiers()
    session.log(
        f"  {wl.name}: tierd done in {task['report']['time']['wall_clock_s']:.1f}s; "
        "sequential agent ..."
    )
    session.reset_sim()
    seq = await run_sequential(plan, wl.goal, task_settings, tiers, tid)
    session.log(f"  {wl.name}: sequential {seq.wall_s:.1f}s; LangGraph Send ...")
    session.reset_sim()
    lg = await run_langgraph(plan, wl.goal, task_settings, tiers, tid, settings.ceiling)
    session.log(f"  {wl.name}: LangGraph {lg.wall_s:.1f}s; LangGraph functional ...")
    session.reset_sim()
    fn = await run_functional(plan, wl.goal, task_settings, tiers, tid, settings.ceiling)
    session.log(f"  {wl.name}: LangGraph functional {fn.wall_s:.1f}s")
    session.reset_sim()
    return WorkloadRun(
        workload=wl,
        task=task,
        plan=plan,
        records=records,
        submitted=submitted,
        cpu_s=cpu,
        busy_s=busy_s,
        cpu_split=(split1[0] - split0[0], split1[1] - split0[1]),
        sequential=seq,
        langgraph=lg,
        functional=fn,
        levels=dependency_levels(plan),
    )
