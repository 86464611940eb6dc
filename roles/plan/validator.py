"""The plan validator: the planner's plan is checked in code, never taken on trust.

A model is asked for a plan that is acyclic, has disjoint ownership and so on, but nothing makes
it comply, so every rule is enforced here. `validate_plan` returns human-readable problems (an
empty list means the plan is valid); `format_problems` turns them into the message sent back to
the planner on a retry, so each problem names the streams involved and says how to fix it.

Also here, because they read the same dependency graph: a stable `topological_order`, the
`critical_path` of a plan given stream durations (the ideal wall-clock time of a parallel run),
`sequentialize` (what the scheduler applies when the rules say "never parallelize"), and the
`is_code_shaped` heuristic that decides whether the tests-first rule applies to a goal.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from roles.plan.ownership import (
    areas_overlap,
    code_ownership_problems,
    globs_overlap,
    join_words,
    normalize_area,
)
from roles.plan.schema import Plan, StreamSpec

Parallelize = Literal["when-possible", "always", "never"]
PARALLELIZE_MODES: tuple[str, ...] = ("when-possible", "always", "never")
#: Whether two ownership areas overlap (`areas_overlap`, or `globs_overlap` for code tasks).
Overlap = Callable[[str, str], bool]

__all__ = [
    "PARALLELIZE_MODES",
    "Parallelize",
    "PlanInvalid",
    "PlanRules",
    "areas_overlap",
    "critical_path",
    "ensure_valid",
    "format_problems",
    "is_code_shaped",
    "normalize_area",
    "sequentialize",
    "topological_order",
    "validate_plan",
]


@dataclass
class PlanRules:
    """The rules a plan is validated against (from the `[plan]` and `[rules]` config tables).

    `require_tests_first` is decided by the caller, normally `is_code_shaped(goal)`: the same
    flag should also go into the planner prompt, so the planner is told about exactly the rule
    it will be held to.
    """

    max_streams: int = 8
    #: Groups of areas that must never be split across streams, e.g. [["auth/", "db/"]].
    coupled: list[list[str]] = field(default_factory=list)
    #: Not checked by `validate_plan`: "never" is enforced by the scheduler with `sequentialize`
    #: whatever the planner returns, and "always"/"when-possible" are guidance for the planner.
    parallelize: Parallelize = "when-possible"
    require_tests_first: bool = False
    #: A code task: ownership entries are path globs (see `roles.plan.ownership`); every stream
    #: owns at least one, inside the repository, and only streams that may run at the same
    #: time need disjoint paths (a dependent stream starts from its dependencies' result).
    code: bool = False
    #: The names of the task's attachments: a stream's `attachments` may name only these.
    attachments: list[str] = field(default_factory=list)
    #: Attachments holding images that an executor of this task cannot see: each one given
    #: to a stream needs the planner's description in the plan's `attachments`.
    describe: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Fail loudly on a typo from a hand-built rules object rather than silently ignoring it.
        if self.parallelize not in PARALLELIZE_MODES:
            raise ValueError(
                f"parallelize must be one of {', '.join(PARALLELIZE_MODES)}, "
                f"not {self.parallelize!r}"
            )
        if self.max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, not {self.max_streams}")


class PlanInvalid(Exception):
    """A plan the validator refused; `problems` are the individual messages."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: Sequence[str]) -> str:
    """The message sent back to the planner: every problem, numbered, then what to do.

    Returns "" for no problems so callers can use the result as a truthy "is there an error".
    """
    if not problems:
        return ""
    count = len(problems)
    lines = [f"The plan was rejected: the validator found {count} problem{'s' * (count != 1)}."]
    lines += [f"{number}. {problem}" for number, problem in enumerate(problems, start=1)]
    lines.append(
        "Fix every problem listed and answer with the complete corrected plan as JSON, in the "
        "same shape as before (not only the streams you changed)."
    )
    return "\n".join(lines)


# --- ownership areas ------------------------------------------------------------------------


def _owned_areas(stream: StreamSpec) -> list[str]:
    # Blank entries are noise from the model, not a claim on anything: skip them rather than
    # reject the plan over them.
    return [area for area in stream.ownership if area.strip()]


def _first_overlap(
    first: Iterable[str], second: Sequence[str], overlap: Overlap = areas_overlap
) -> tuple[str, str] | None:
    for area in first:
        for other in second:
            if overlap(area, other):
                return area, other
    return None


# --- the dependency graph -------------------------------------------------------------------


def _graph(streams: Sequence[StreamSpec]) -> tuple[list[str], dict[str, list[str]]]:
    """Unique ids in plan order and each id's known dependencies (no self-edges, no repeats).

    Duplicate ids are merged (their dependencies united) so that the other checks still run on
    a plan that also has duplicates; the duplicate itself is reported separately.
    """
    ids: list[str] = []
    deps: dict[str, list[str]] = {}
    for stream in streams:
        if stream.id not in deps:
            ids.append(stream.id)
            deps[stream.id] = []
    for stream in streams:
        for dep in stream.depends_on:
            if dep in deps and dep != stream.id and dep not in deps[stream.id]:
                deps[stream.id].append(dep)
    return ids, deps


def _finish_order(ids: list[str], deps: dict[str, list[str]]) -> list[str]:
    """The streams in the order a depth-first walk along depends_on finishes them."""
    order: list[str] = []
    seen: set[str] = set()
    for root in ids:
        if root in seen:
            continue
        seen.add(root)
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index < len(deps[node]):
                stack.append((node, index + 1))
                nxt = deps[node][index]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, 0))
            else:
                order.append(node)
    return order


def _strongly_connected(ids: list[str], deps: dict[str, list[str]]) -> list[list[str]]:
    """Kosaraju's algorithm, iterative so a huge plan cannot exhaust the recursion limit."""
    order = _finish_order(ids, deps)
    reverse: dict[str, list[str]] = {node: [] for node in ids}
    for node in ids:
        for dep in deps[node]:
            reverse[dep].append(node)
    components: list[list[str]] = []
    assigned: set[str] = set()
    for root in reversed(order):
        if root in assigned:
            continue
        assigned.add(root)
        component = [root]
        todo = [root]
        while todo:
            node = todo.pop()
            for nxt in reverse[node]:
                if nxt not in assigned:
                    assigned.add(nxt)
                    component.append(nxt)
                    todo.append(nxt)
        components.append(component)
    return components


def _cycles(ids: list[str], deps: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per cyclic group of streams, as a path that returns to its start.

    Each cycle starts at the group's first stream in plan order and is the shortest way back to
    it (breadth-first along depends_on), so the report is deterministic and easy to read.
    """
    position = {node: index for index, node in enumerate(ids)}
    cycles: list[list[str]] = []
    for component in _strongly_connected(ids, deps):
        if len(component) < 2:
            continue  # self-dependencies are reported on their own
        members = set(component)
        start = min(component, key=position.__getitem__)
        parent: dict[str, str] = {}
        queue = deque([start])
        found: str | None = None
        while queue and found is None:
            node = queue.popleft()
            for nxt in deps[node]:
                if nxt not in members:
                    continue
                if nxt == start:
                    found = node
                    break
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        assert found is not None, "a strongly connected component always has a cycle"
        path = [found]
        while path[-1] != start:
            path.append(parent[path[-1]])
        path.reverse()
        cycles.append([*path, start])
    cycles.sort(key=lambda cycle: position[cycle[0]])
    return cycles


def _ancestors(node: str, deps: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    todo = list(deps[node])
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(deps[dep])
    return found


# --- validation -----------------------------------------------------------------------------


def _quote_ids(ids: Sequence[str]) -> str:
    quoted = [f"'{stream_id}'" for stream_id in ids]
    return join_words(quoted)


def _graph_checks(streams: Sequence[StreamSpec]) -> list[str]:
    """The problems that make the dependency graph itself unusable: ids and edges."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    for stream in streams:
        counts[stream.id] = counts.get(stream.id, 0) + 1
    for stream_id, count in counts.items():
        if count > 1:
            problems.append(
                f"stream id '{stream_id}' is used by {count} streams: give every stream a unique id"
            )
    known_list = _quote_ids(list(counts))
    for stream in streams:
        if stream.id in stream.depends_on:
            problems.append(
                f"stream '{stream.id}' depends on itself: remove '{stream.id}' from its depends_on"
            )
        for dep in dict.fromkeys(stream.depends_on):
            if dep not in counts:
                problems.append(
                    f"stream '{stream.id}' depends on unknown stream '{dep}': depends_on may "
                    f"only name streams of this plan ({known_list})"
                )
    ids, deps = _graph(streams)
    for cycle in _cycles(ids, deps):
        problems.append(
            f"cycle: {' -> '.join(cycle)} (each stream depends on the next): remove one of "
            "these dependencies so the streams can run in order"
        )
    return problems


def validate_plan(plan: Plan, rules: PlanRules) -> list[str]:
    """Every problem with `plan` under `rules`, as messages for the planner; [] when valid.

    Checks, in this order: at least one stream; at most `rules.max_streams`; unique ids; no
    self-dependency; no unknown dependency; no cycle (the path is reported); a non-blank job and
    output_definition per stream; disjoint ownership between streams; each coupled group owned
    by a single stream; and, when `rules.require_tests_first`, the tests-first rule: every
    stream of kind "implementation" must depend, directly or through other streams, on at least
    one stream of kind "tests". (Which tests stream covers which code is left to the planner and
    the review: matching titles or paths would be guesswork.)

    Attachments: a stream names only the task's attachments (`rules.attachments`), the
    plan describes only those, and each attachment of `rules.describe` (images an executor
    cannot see) that a stream is given has a non-blank description.

    For a code task (`rules.code`) ownership entries are path globs and the ownership check is
    `roles.plan.ownership.code_ownership_problems` instead: every stream owns at least one
    glob, relative and inside the repository (no leading "/", no "..", nothing in ".git"), and
    only streams that may run at the same time must own disjoint paths.
    """
    streams = list(plan.streams or [])
    problems: list[str] = []
    if not streams:
        return ["the plan has no streams: give at least one stream"]

    if len(streams) > rules.max_streams:
        problems.append(
            f"the plan has {len(streams)} streams but at most {rules.max_streams} are allowed: "
            "merge closely related streams"
        )

    problems.extend(_graph_checks(streams))
    problems.extend(_blank_field_problems(streams))
    owned = [(stream.id, _owned_areas(stream)) for stream in streams]
    if rules.code:
        problems.extend(_code_ownership(streams, owned, rules))
    else:
        problems.extend(_ownership_problems(owned))
    overlap = globs_overlap if rules.code else areas_overlap
    problems.extend(_coupled_problems(owned, rules.coupled, overlap))
    if rules.require_tests_first:
        problems.extend(_tests_first_problems(streams))
    problems.extend(_attachment_problems(plan, rules))
    return problems


def _code_ownership(
    streams: Sequence[StreamSpec], owned: Sequence[tuple[str, list[str]]], rules: PlanRules
) -> list[str]:
    _ids, deps = _graph(streams)
    ancestors = {stream_id: _ancestors(stream_id, deps) for stream_id in deps}

    def may_run_together(first: str, second: str) -> bool:
        # "never" runs the plan as one chain (`sequentialize`): nothing runs at the same time.
        if rules.parallelize == "never":
            return False
        return first not in ancestors[second] and second not in ancestors[first]

    return code_ownership_problems(owned, may_run_together)


def _blank_field_problems(streams: Sequence[StreamSpec]) -> list[str]:
    problems: list[str] = []
    for stream in streams:
        if not stream.job.strip():
            problems.append(
                f"stream '{stream.id}' has a blank job: say in one sentence what it does"
            )
        if not stream.output_definition.strip():
            problems.append(
                f"stream '{stream.id}' has no output_definition: say what its output must contain"
            )
    return problems


def _ownership_problems(owned: Sequence[tuple[str, list[str]]]) -> list[str]:
    problems: list[str] = []
    for index, (first_id, first_areas) in enumerate(owned):
        for second_id, second_areas in owned[index + 1 :]:
            overlap = _first_overlap(first_areas, second_areas)
            if overlap is not None:
                problems.append(
                    f"streams '{first_id}' and '{second_id}' own overlapping areas "
                    f"'{overlap[0]}' and '{overlap[1]}': ownership must be disjoint, give "
                    "each area to exactly one stream"
                )
    return problems


def _coupled_problems(
    owned: Sequence[tuple[str, list[str]]],
    coupled: Sequence[Sequence[str]],
    overlap: Overlap = areas_overlap,
) -> list[str]:
    problems: list[str] = []
    for group in coupled:
        areas = [area for area in group if area.strip()]
        if not areas:
            continue
        # A stream "touches" the group when any area it owns overlaps any area of the group:
        # owning auth/login.py is a claim on part of auth/.
        touching = [
            stream_id
            for stream_id, stream_areas in owned
            if _first_overlap(stream_areas, areas, overlap) is not None
        ]
        touching = list(dict.fromkeys(touching))
        if len(touching) > 1:
            problems.append(
                f"coupled areas {join_words(areas)} are split across streams "
                f"{_quote_ids(touching)}: put them in one stream"
            )
    return problems


def _attachment_problems(plan: Plan, rules: PlanRules) -> list[str]:
    """Streams naming attachments the task does not have, descriptions of unknown ones, and
    images given to executors that cannot see them without a description."""
    known = list(dict.fromkeys(rules.attachments))
    have = (
        f"the task's attachments are {join_words([repr(n) for n in known])}"
        if known
        else "the task has no attachments: leave attachments empty"
    )
    problems: list[str] = []
    given: dict[str, list[str]] = {}
    for stream in plan.streams:
        for name in dict.fromkeys(stream.attachments):
            if name in known:
                given.setdefault(name, []).append(stream.id)
            else:
                problems.append(
                    f"stream '{stream.id}' names attachment {name!r}, which the task does not "
                    f"have: name attachments exactly as listed ({have})"
                )
    for note in plan.attachments or []:
        if note.name not in known:
            problems.append(
                f"the plan describes attachment {note.name!r}, which the task does not have: "
                f"use the names as listed ({have})"
            )
    described = plan.descriptions()
    for name in dict.fromkeys(rules.describe):
        if name in given and not described.get(name, "").strip():
            problems.append(
                f"attachment {name!r} holds images and is given to stream(s) "
                f"{_quote_ids(given[name])}, whose executor cannot see images: describe it "
                f'in the plan\'s attachments list ({{"name": {json.dumps(name)}, '
                '"description": "..."}), with everything the executor needs from it'
            )
    return problems


def _tests_first_problems(streams: Sequence[StreamSpec]) -> list[str]:
    _ids, deps = _graph(streams)
    implementation = list(
        dict.fromkeys(stream.id for stream in streams if stream.kind == "implementation")
    )
    if not implementation:
        return []
    tests = {stream.id for stream in streams if stream.kind == "tests"}
    if not tests:
        return [
            "tests come first for this goal, but the plan has no stream of kind 'tests': add "
            "one that outlines the tests, and make the implementation streams "
            f"({_quote_ids(implementation)}) depend on it"
        ]
    problems = []
    for stream_id in implementation:
        if not _ancestors(stream_id, deps) & tests:
            problems.append(
                f"implementation stream '{stream_id}' does not depend on a stream of kind "
                f"'tests': add a tests stream ({_quote_ids(sorted(tests))}) to its depends_on, "
                "directly or through another stream, so its tests are outlined first"
            )
    return problems


def ensure_valid(plan: Plan, rules: PlanRules) -> None:
    """Raise `PlanInvalid` with every problem if `plan` breaks `rules`."""
    problems = validate_plan(plan, rules)
    if problems:
        raise PlanInvalid(problems)


# --- ordering and timing --------------------------------------------------------------------


def topological_order(plan: Plan) -> list[str]:
    """Stream ids so that every stream comes after its dependencies.

    Stable: among streams that are ready at the same time, the one listed first in the plan
    comes first, so a plan already written in dependency order keeps its order. Raises
    `PlanInvalid` if the graph has a cycle, a duplicate id or an unknown dependency.
    """
    problems = _graph_checks(list(plan.streams or []))
    if problems:
        raise PlanInvalid(problems)
    ids, deps = _graph(plan.streams)
    position = {node: index for index, node in enumerate(ids)}
    waiting = {node: len(deps[node]) for node in ids}
    dependents: dict[str, list[str]] = {node: [] for node in ids}
    for node in ids:
        for dep in deps[node]:
            dependents[dep].append(node)
    ready = [position[node] for node in ids if waiting[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = ids[heapq.heappop(ready)]
        order.append(node)
        for nxt in dependents[node]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, position[nxt])
    return order


def critical_path(plan: Plan, durations: dict[str, float]) -> float:
    """The longest chain of dependent durations: the wall-clock time of an ideal parallel run.

    A stream missing from `durations` counts as 0.0 (e.g. a stream that never ran), so a
    partial report can still be computed. Compare with `sum(durations.values())`, the time the
    same streams would take one after another.
    """
    _ids, deps = _graph(plan.streams)
    finish: dict[str, float] = {}
    for node in topological_order(plan):
        start = max((finish[dep] for dep in deps[node]), default=0.0)
        finish[node] = start + float(durations.get(node, 0.0))
    return max(finish.values(), default=0.0)


def sequentialize(plan: Plan) -> Plan:
    """A copy of `plan` whose streams form one chain, in topological order.

    Used when `rules.parallelize == "never"`: the scheduler applies it whatever the planner
    returned. Each stream keeps its own dependencies (its executor still receives exactly those
    outputs) and additionally depends on the stream before it; the streams are listed in the
    chain's order.
    """
    order = topological_order(plan)
    by_id = {stream.id: stream for stream in plan.streams}
    chained: list[StreamSpec] = []
    previous: str | None = None
    for stream_id in order:
        stream = by_id[stream_id].model_copy(deep=True)
        if previous is not None and previous not in stream.depends_on:
            stream.depends_on = [*stream.depends_on, previous]
        chained.append(stream)
        previous = stream_id
    copy = plan.model_copy(deep=True)
    copy.streams = chained
    return copy


# --- goal shape -----------------------------------------------------------------------------

#: Words that make a goal about software. Deliberately specific: a false positive forces a
#: tests stream onto a goal that has nothing to test ("implement a marketing strategy"), so
#: words just as common outside code ("implement", "build", "fix", "package", "script",
#: "library", "commit", "regression") are not here.
_CODE_WORDS = (
    r"code|coding|codebase|source code|function|functions|method|methods|module|modules|"
    r"test|tests|testing|unit tests?|unittest|pytest|api|apis|endpoint|endpoints|"
    r"bug|bugs|bugfix|debug|debugging|refactor|refactoring|compile|compiler|repo|repository|"
    r"pull request|stack ?trace|traceback|segfault|cli|sql|frontend|backend|css|html|"
    r"typescript|javascript|python|golang|kotlin|dockerfile|webhook|lint|linter|type error|"
    r"null pointer|sdk|ui|sidebar|toolbar|button|dropdown|widget|drag-and-drop|drag and drop"
)
_CODE_WORD_RE = re.compile(rf"\b(?:{_CODE_WORDS})\b", re.IGNORECASE)
#: A file name with a source-code extension: `sidebar.tsx`, `auth/login.py`.
_CODE_FILE_RE = re.compile(
    r"\b[\w./-]+\.(?:py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|java|kt|kts|c|h|cc|cpp|hpp|cs|rb|"
    r"php|swift|scala|sh|bash|sql|vue|svelte|css|scss|html|toml|ya?ml|json|ipynb|lua|dart|"
    r"ex|exs|erl|hs|ml|clj|r|jl|zig|proto|gradle)\b",
    re.IGNORECASE,
)
#: Code-looking fragments: a call `foo()`, an inline code span, a snake_case or dotted name.
_CODE_TOKEN_RE = re.compile(r"\w\(\)|`[^`\n]+`|\b[a-z]+_[a-z_]+\b|\b[a-z]+\.[a-z_]+\(")


def is_code_shaped(goal: str) -> bool:
    """Whether a goal is about code, so that tests come before implementation.

    A simple heuristic, true when the goal mentions any of: software words (code, function,
    module, test, API, endpoint, bug, refactor, repository, stack trace, and UI words such as
    sidebar or button); a file name with a source extension (`.py`, `.ts`, `.go`, ...); or a
    code-looking token (`foo()`, an inline `code span`, a snake_case name). "Add drag-and-drop
    to the sidebar" is code-shaped; "prepare the follow-up for this inbound lead" is not.
    """
    return bool(
        _CODE_WORD_RE.search(goal) or _CODE_FILE_RE.search(goal) or _CODE_TOKEN_RE.search(goal)
    )
