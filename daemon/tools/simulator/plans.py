"""The plans the simulated planner answers: shapes generated from a few numbers, and plans
broken on purpose (a cycle, a duplicate id, ...) so tests can watch the validator refuse them.
A plan whose streams name attachments describes each of them (the scenario's words, else a
stock sentence), as a planner must for executors that cannot see images.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import TYPE_CHECKING, Any

from roles.plan.schema import AttachmentNote, Plan, StreamSpec

if TYPE_CHECKING:
    from daemon.tools.simulator.scenario import GeneratedPlan, InvalidKind

__all__ = ["describe_attachments", "generate_streams", "invalid_plan"]


def _dependencies(gen: GeneratedPlan, ids: list[str], rng: random.Random) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {sid: [] for sid in ids}
    if gen.pattern == "chain":
        for prev, cur in itertools.pairwise(ids):
            deps[cur] = [prev]
    elif gen.pattern == "layers":
        depth = min(gen.depth, gen.width)
        bounds = [round(i * len(ids) / depth) for i in range(depth + 1)]
        layers = [ids[bounds[i] : bounds[i + 1]] for i in range(depth)]
        for below, layer in itertools.pairwise(layers):
            for sid in layer:
                deps[sid] = sorted(rng.sample(below, min(len(below), rng.randint(1, gen.max_deps))))
    elif gen.pattern == "random":
        for i, sid in enumerate(ids):
            earlier = [e for e in ids[:i] if rng.random() < gen.edge_prob]
            deps[sid] = sorted(rng.sample(earlier, min(len(earlier), gen.max_deps)))
    elif gen.pattern == "fan_in" and gen.width > 1:
        deps[ids[-1]] = ids[:-1]
    return deps


def generate_streams(gen: GeneratedPlan, seed: int) -> list[StreamSpec]:
    """The streams of a generated plan; the same numbers and seed give the same plan."""
    rng = random.Random(f"plan|{seed if gen.seed is None else gen.seed}")
    digits = max(2, len(str(gen.width)))
    ids = [f"{gen.prefix}{i + 1:0{digits}d}" for i in range(gen.width)]
    deps = _dependencies(gen, ids, rng)
    return [
        StreamSpec(
            id=sid,
            title=f"Part {i + 1}",
            job=f"Produce part {i + 1} of the result.",
            output_definition=f"A short text for part {i + 1}.",
            ownership=[f"part-{i + 1}/"],
            depends_on=deps[sid],
            acceptance_check="The text covers the part.",
            kind=gen.kind,
        )
        for i, sid in enumerate(ids)
    ]


def describe_attachments(
    streams: list[StreamSpec], notes: list[AttachmentNote]
) -> list[AttachmentNote]:
    """`notes`, plus a stock description of each attachment a stream names without one."""
    described = [note.model_copy() for note in notes]
    have = {note.name for note in notes}
    for stream in streams:
        for name in stream.attachments:
            if name not in have:
                have.add(name)
                described.append(
                    AttachmentNote(
                        name=name, description=f"{name}: the file the task is about (simulated)."
                    )
                )
    return described


def _break(streams: list[dict[str, Any]], kind: InvalidKind) -> None:
    """Break a valid plan's streams (as dicts) in place the way `kind` says."""
    first, last = streams[0], streams[-1]
    if kind == "cycle":
        if len(streams) == 1:
            first["depends_on"].append(first["id"])
        else:
            first["depends_on"].append(last["id"])
            last["depends_on"].append(first["id"])
    elif kind == "self_dependency":
        first["depends_on"].append(first["id"])
    elif kind == "duplicate_id":
        if len(streams) == 1:
            streams.append(dict(first, ownership=["elsewhere/"]))
        else:
            streams[1]["id"] = first["id"]
    elif kind == "missing_output_definition":
        first["output_definition"] = ""
    elif kind == "unknown_dependency":
        first["depends_on"].append("no-such-stream")
    elif kind == "overlapping_ownership":
        if len(streams) == 1:
            streams.append(dict(first, id=f"{first['id']}-2"))
        first["ownership"] = ["shared/"]
        streams[1]["ownership"] = ["shared/"]


def invalid_plan(valid: Plan, kind: InvalidKind) -> str:
    """A plan the validator (or the schema) refuses, as the planner's answer text."""
    if kind == "malformed":
        return 'Here is the plan: {"summary": "unfinished'
    if kind == "no_streams":
        return json.dumps({"summary": valid.summary, "streams": []})
    streams = [s.model_dump() for s in valid.streams]
    _break(streams, kind)
    data = valid.model_dump()
    data["streams"] = streams
    return json.dumps(data)
