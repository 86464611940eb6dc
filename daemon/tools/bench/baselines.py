"""The baselines `tierd bench` runs beside tierd: one sequential agent, LangGraph `Send`
level by level, and a LangGraph functional-API program that starts each stream when ready.

All make real calls through litellm to the simulator, through the model gateway tierd's
engine uses (`roles.model_caller.ModelCaller`, without the engine's memo and governor), with
the prompts tierd's roles build (`roles.executor.execute`, `roles.orchestrator.review`) under
the task's own settings (`TaskSettings`), and all send the tierd task's id in
`X-Tierd-Task`: the simulator draws each call's latency and tokens from the call's identity,
so after a reset of its counters a baseline's call for stream `s07` takes exactly as long,
and costs exactly as many tokens, as tierd's did.

- `run_sequential`: one agent doing the streams one after another in dependency order, each
  with its dependencies' outputs; executor calls only (nobody reviews a lone agent's work).
- `run_langgraph`: the map-reduce pattern LangGraph's documentation teaches, applied level by
  level: a `StateGraph` whose router returns one `Send("work", ...)` per stream of the current
  dependency level, with a barrier node between levels. Each `work` node does what one tierd
  stream does on its first pass (execute, then the premium review), so the difference to
  tierd is the scheduling alone (barriers against start-when-ready).
- `run_functional`: the strongest fair peer: the same streams as a LangGraph functional-API
  program (`@entrypoint`, `@task`) with futures. Each stream is one `@task` doing the same
  first pass, started the moment its dependencies' futures resolve (start-when-ready, as
  tierd does), in process, with no checkpointer (no durability) and LangGraph's own
  `max_concurrency` as the ceiling. What tierd adds over it (a daemon, a store, events,
  durability) is what the difference measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, cast

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from daemon.engine.settings import TaskSettings
from daemon.tools.bench.measure import metered_default_executor
from roles import orchestrator
from roles.calls import Caller
from roles.executor import execute
from roles.model_caller import ModelCaller
from roles.models.gateway import ModelTier, UsageRecord
from roles.plan.schema import Plan, StreamSpec
from roles.plan.validator import topological_order
from roles.prompts import PromptRules, goal_line

__all__ = [
    "BaselineRun",
    "dependency_levels",
    "prompt_rules_for",
    "run_functional",
    "run_langgraph",
    "run_sequential",
]


@dataclass
class BaselineRun:
    """What one baseline run measured."""

    wall_s: float
    records: list[UsageRecord] = field(default_factory=list)
    #: CPU time of the calling thread and of its loop's worker threads: the litellm client
    #: side, which runs the synchronous part of each call in a worker thread (the simulator
    #: has its own).
    client_cpu_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(r.prompt_tokens + r.completion_tokens for r in self.records if r.outcome == "ok")

    @property
    def calls(self) -> int:
        return len(self.records)


def prompt_rules_for(goal: str, settings: dict[str, Any]) -> tuple[PromptRules, bool, str]:
    """The prompt rules, split permission and goal line tierd used for a task's executors.

    From the task's stored settings (`report["settings"]`) as the engine reads them, so a
    baseline's prompts are the very prompts tierd sent (and the simulator counts the same
    prompt tokens).
    """
    task = TaskSettings.from_stored(settings)
    return task.prompt_rules(goal), task.split_depth_left > 0, goal_line(goal)


def dependency_levels(plan: Plan) -> list[list[str]]:
    """Streams grouped by level: a stream's level is the longest chain of dependencies
    below it (0 for a stream that needs nothing)."""
    deps = {s.id: list(s.depends_on) for s in plan.streams}
    level: dict[str, int] = {}
    for sid in topological_order(plan):
        level[sid] = 1 + max((level[d] for d in deps[sid]), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for s in plan.streams:
        levels[level[s.id]].append(s.id)
    return levels


@dataclass
class _Peer:
    """What every baseline sets up alike: the task's prompt rules, a model caller that keeps
    each call's record, and the plan's streams by id."""

    rules: PromptRules
    may_split: bool
    line: str
    caller: Caller
    records: list[UsageRecord]
    specs: dict[str, StreamSpec]

    @classmethod
    def make(
        cls,
        plan: Plan,
        goal: str,
        settings: dict[str, Any],
        tiers: dict[str, ModelTier],
        task_id: str,
    ) -> _Peer:
        rules, may_split, line = prompt_rules_for(goal, settings)
        records: list[UsageRecord] = []
        caller = ModelCaller(tiers, task_id, records.append)
        return cls(rules, may_split, line, caller, records, {s.id: s for s in plan.streams})

    async def execute(self, sid: str, deps: dict[str, str]) -> str:
        reply = await execute(
            self.caller,
            self.specs[sid],
            self.line,
            deps,
            self.rules,
            round=0,
            feedback=None,
            answers=None,
            may_split=self.may_split,
        )
        # The bench scenarios never ask or split; an agent alone would take any text as output.
        return reply.output or ""

    async def first_pass(self, sid: str, deps: dict[str, str]) -> str:
        """What one tierd stream does on its first pass: the executor call, then the premium
        review (its verdict is not acted on: the bench scenarios accept first passes)."""
        output = await self.execute(sid, deps)
        await orchestrator.review(self.caller, self.specs[sid], output, self.rules, round=0)
        return output

    async def timed(self, run: Awaitable[dict[str, str]]) -> BaselineRun:
        """Await `run` (the peer's outputs by stream), timed in wall time and in the CPU of the
        calling thread plus its loop's worker threads (where litellm runs its synchronous part)."""
        pool = metered_default_executor()
        cpu0, t0 = time.thread_time() + pool.cpu_s(), time.perf_counter()
        outputs = await run
        wall = time.perf_counter() - t0
        cpu = time.thread_time() + pool.cpu_s() - cpu0
        return BaselineRun(wall, self.records, cpu, dict(outputs))


async def run_sequential(
    plan: Plan, goal: str, settings: dict[str, Any], tiers: dict[str, ModelTier], task_id: str
) -> BaselineRun:
    """One agent, one stream at a time, in dependency order: executor calls only."""
    peer = _Peer.make(plan, goal, settings, tiers, task_id)

    async def in_order() -> dict[str, str]:
        outputs: dict[str, str] = {}
        for sid in topological_order(plan):
            deps = {d: outputs[d] for d in peer.specs[sid].depends_on}
            outputs[sid] = await peer.execute(sid, deps)
        return outputs

    return await peer.timed(in_order())


def _merge_dicts(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    return {**a, **b}


class _GraphState(TypedDict):
    outputs: Annotated[dict[str, str], _merge_dicts]
    level: int


class _WorkItem(TypedDict):
    stream: str
    outputs: dict[str, str]


async def run_langgraph(
    plan: Plan,
    goal: str,
    settings: dict[str, Any],
    tiers: dict[str, ModelTier],
    task_id: str,
    max_concurrency: int,
) -> BaselineRun:
    """The streams as a LangGraph `Send` map-reduce, one dependency level per superstep."""
    peer = _Peer.make(plan, goal, settings, tiers, task_id)
    levels = dependency_levels(plan)

    def route(state: _GraphState) -> Any:
        if state["level"] >= len(levels):
            return END
        return [
            Send("work", {"stream": sid, "outputs": state["outputs"]})
            for sid in levels[state["level"]]
        ]

    async def work(item: _WorkItem) -> dict[str, Any]:
        sid = item["stream"]
        deps = {d: item["outputs"][d] for d in peer.specs[sid].depends_on}
        return {"outputs": {sid: await peer.first_pass(sid, deps)}}

    def barrier(state: _GraphState) -> dict[str, Any]:
        return {"level": state["level"] + 1}

    graph = StateGraph(_GraphState)
    # `work` takes a Send's item, not the graph's state, which the stubs cannot express.
    graph.add_node("work", cast(Any, work))
    graph.add_node("barrier", barrier)
    graph.add_conditional_edges(START, route, ["work", END])
    graph.add_edge("work", "barrier")
    graph.add_conditional_edges("barrier", route, ["work", END])
    app = graph.compile()
    config: Any = {"max_concurrency": max_concurrency, "recursion_limit": 4 * len(levels) + 10}

    async def levels_in_turn() -> dict[str, str]:
        final = await app.ainvoke({"outputs": {}, "level": 0}, config)
        return dict(final["outputs"])

    return await peer.timed(levels_in_turn())


async def run_functional(
    plan: Plan,
    goal: str,
    settings: dict[str, Any],
    tiers: dict[str, ModelTier],
    task_id: str,
    max_concurrency: int,
) -> BaselineRun:
    """The streams as a LangGraph functional-API program: one `@task` per stream, each
    started as soon as its dependencies' futures resolve."""
    peer = _Peer.make(plan, goal, settings, tiers, task_id)

    @task
    async def stream(sid: str, deps: dict[str, str]) -> str:
        return await peer.first_pass(sid, deps)

    # The ceiling, as a semaphore of our own: LangGraph's `max_concurrency` gates the
    # entrypoint too (it holds a slot while it waits), so it would allow one stream fewer.
    ceiling = asyncio.Semaphore(max_concurrency)

    @entrypoint()
    async def program(order: list[str]) -> dict[str, str]:
        started: dict[str, asyncio.Task[str]] = {}

        async def when_ready(sid: str) -> str:
            # Waits on its dependencies alone: no level, no barrier. The asyncio task copies
            # the entrypoint's context, so the `@task` call is scheduled by this run.
            deps = {d: await started[d] for d in peer.specs[sid].depends_on}
            async with ceiling:
                return await stream(sid, deps)

        # In dependency order, so a stream's dependencies have their futures when it starts.
        for sid in order:
            started[sid] = asyncio.create_task(when_ready(sid))
        outputs = await asyncio.gather(*started.values())
        return dict(zip(started, outputs, strict=True))

    return await peer.timed(program.ainvoke(topological_order(plan)))
