"""The governor: the limit follows memory pressure, slots are fair, nothing leaks.

Most tests drive the governor with a `ScriptedSource` and a fake clock, calling `tick()` by
hand. One slow test uses the real psutil source with a child process that holds memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from daemon.config.layers import ConfigError
from daemon.governor.governor import ConcurrencySettings, Governor
from daemon.governor.memory import (
    GiB,
    MemoryReading,
    MiB,
    PsutilSource,
    ScriptedSource,
    cgroup_dirs,
    read_cgroup,
)

TOTAL = 16 * GiB
AGENT = 64 * MiB  # the default minimum per-agent estimate


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make(
    **settings: Any,
) -> tuple[Governor, ScriptedSource, FakeClock, list[dict[str, Any]]]:
    clock = FakeClock()
    source = ScriptedSource(total=TOTAL, daemon_rss=200 * MiB, clock=clock)
    source.set(used_fraction=0.25)
    events: list[dict[str, Any]] = []
    gov = Governor(
        ConcurrencySettings(**settings), source=source, on_change=events.append, clock=clock
    )
    return gov, source, clock, events


def room_for(agents: int, soft: float = 0.80, in_flight: int = 0) -> int:
    """`available` such that exactly `agents` more agents of 64 MiB fit under `soft`."""
    used = int(soft * TOTAL) - agents * AGENT - AGENT // 2
    return TOTAL - used


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


class Holder:
    """An agent that takes a slot and keeps it until told to finish."""

    def __init__(self, gov: Governor, task_id: str) -> None:
        self.entered = asyncio.Event()
        self.finish = asyncio.Event()
        self.task = asyncio.create_task(self._run(gov, task_id))

    async def _run(self, gov: Governor, task_id: str) -> None:
        async with gov.slot(task_id):
            self.entered.set()
            await self.finish.wait()

    async def done(self) -> None:
        self.finish.set()
        await self.task


async def hold(gov: Governor, task_id: str, n: int = 1) -> list[Holder]:
    holders = [Holder(gov, task_id) for _ in range(n)]
    await settle()
    return holders


# --- the limit follows pressure ----------------------------------------------------------


async def test_pressure_rising_lowers_the_limit_at_once() -> None:
    gov, source, _clock, events = make()
    await gov.tick()
    assert gov.limit == 5 and events == []
    assert gov.snapshot()["reason"].startswith("at ceiling")

    source.set(available=room_for(2))
    await gov.tick()  # same instant: lowering needs no cool-down
    assert gov.limit == 2
    assert events[-1]["old"] == 5 and events[-1]["new"] == 2
    assert events[-1]["reason"].startswith("lowered 5 -> 2: memory used 0.7")
    assert "room under soft 0.80 for 2 more agent(s)" in events[-1]["reason"]

    source.set(used_fraction=0.90)
    await gov.tick()
    assert gov.limit == 1  # the floor, not lower: 0.90 is below hard
    assert events[-1]["reason"] == "lowered 2 -> 1: memory used 0.90 above soft 0.80"
    assert gov.snapshot()["paused"] is False


async def test_limit_counts_agents_in_flight_and_reserve() -> None:
    gov, source, _clock, _events = make(reserve_bytes=2 * AGENT)
    holders = await hold(gov, "t", 2)
    source.set(available=room_for(3))
    await gov.tick()
    # Two running + three that fit - two the reserve keeps free.
    assert gov.limit == 3
    for h in holders:
        await h.done()


async def test_pressure_falling_raises_one_step_per_cooldown() -> None:
    gov, source, clock, events = make(cooldown_s=5.0)
    source.set(used_fraction=0.90)
    await gov.tick()
    assert gov.limit == 1

    source.set(used_fraction=0.30)
    await gov.tick()
    assert gov.limit == 1  # room seen, but not yet for a whole cool-down
    assert gov.snapshot()["target"] == 5
    assert gov.snapshot()["reason"].startswith("raising to 5")
    clock.advance(4.9)
    await gov.tick()
    assert gov.limit == 1
    clock.advance(0.1)
    await gov.tick()
    assert gov.limit == 2
    await gov.tick()
    assert gov.limit == 2  # one step, then a fresh cool-down
    for expected in (3, 4, 5, 5):
        clock.advance(5.0)
        await gov.tick()
        assert gov.limit == expected
    raises = [e for e in events if e["new"] > e["old"]]
    assert [(e["old"], e["new"]) for e in raises] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    assert raises[0]["reason"].startswith("raised 1 -> 2: memory used 0.30 below soft 0.80")


async def test_room_that_comes_and_goes_does_not_flap() -> None:
    gov, source, clock, events = make(cooldown_s=5.0)
    source.set(available=room_for(2))
    await gov.tick()
    assert gov.limit == 2
    for _ in range(6):
        # Room for 3 for 3 s, then back to room for 2: never a whole cool-down of room.
        clock.advance(3.0)
        source.set(available=room_for(3))
        await gov.tick()
        clock.advance(3.0)
        source.set(available=room_for(2))
        await gov.tick()
        assert gov.limit == 2
    assert len(events) == 1  # only the first lowering


async def test_hard_threshold_pauses_dispatch_but_running_agents_continue() -> None:
    gov, source, clock, events = make(cooldown_s=1.0)
    await gov.tick()
    running = await hold(gov, "t", 2)
    assert all(h.entered.is_set() for h in running)

    source.set(used_fraction=0.96)
    await gov.tick()
    snap = gov.snapshot()
    assert snap["limit"] == 0 and snap["paused"] is True
    assert events[-1]["reason"] == "lowered 5 -> 0: memory used 0.96 above hard 0.95"
    assert snap["reason"].startswith("paused")

    waiter = Holder(gov, "u")
    await settle()
    assert not waiter.entered.is_set()
    assert gov.waiting == 1
    # Running agents are not touched: they finish on their own.
    assert not any(h.task.done() for h in running)
    await running[0].done()
    await settle()
    assert not waiter.entered.is_set()  # one fewer running, but still paused

    source.set(used_fraction=0.30)
    await gov.tick()
    clock.advance(1.0)
    await gov.tick()
    assert gov.limit == 1  # one in flight: still no room for the waiter
    assert not waiter.entered.is_set()
    clock.advance(1.0)
    await gov.tick()
    assert gov.limit == 2
    await asyncio.wait_for(waiter.entered.wait(), 5)
    await running[1].done()
    await waiter.done()
    assert gov.in_flight == 0 and gov.waiting == 0


# --- the per-agent estimate --------------------------------------------------------------


async def test_per_agent_estimate_follows_growth_and_keeps_its_minimum() -> None:
    gov, source, _clock, _events = make(ceiling=8)
    await gov.tick()  # idle: the baseline
    assert gov.per_agent_estimate == AGENT
    holders = await hold(gov, "t", 2)
    source.set(daemon_rss=200 * MiB + 2 * 300 * MiB)
    await gov.tick()
    first = gov.per_agent_estimate
    assert AGENT < first < 300 * MiB
    for _ in range(20):
        await gov.tick()
    assert 290 * MiB < gov.per_agent_estimate <= 300 * MiB
    # 600 MiB of headroom is room for two agents of ~300 MiB, not nine of 64 MiB.
    source.set(available=TOTAL - (int(0.8 * TOTAL) - 600 * MiB))
    await gov.tick()
    assert gov.limit == 4
    assert gov.snapshot()["memory"]["per_agent_estimate"] == gov.per_agent_estimate

    source.set(daemon_rss=200 * MiB)  # agents use nothing measurable now
    for _ in range(100):
        await gov.tick()
    assert gov.per_agent_estimate == AGENT  # decays to the minimum, never below
    for h in holders:
        await h.done()


async def test_memory_a_drained_burst_leaves_behind_is_not_charged_to_the_agents_left() -> None:
    """RSS does not fall when agents finish (the allocator keeps what they freed): the agents
    still running at the end of a burst must not be charged with all of it."""
    gov, source, _clock, _events = make(ceiling=1000, min_agent_bytes=MiB)
    await gov.tick()  # idle: the baseline
    burst = await hold(gov, "t", 100)
    source.set(daemon_rss=200 * MiB + 100 * 2 * MiB)
    for _ in range(20):
        await gov.tick()
    assert 1.9 * MiB < gov.per_agent_estimate <= 2 * MiB
    for h in burst[1:]:
        await h.done()
    assert gov.in_flight == 1
    for _ in range(20):
        await gov.tick()  # the burst's 200 MiB are still resident
    assert gov.per_agent_estimate <= 2 * MiB
    # 8.8 GiB of headroom at 2 MiB an agent: the ceiling, not 45 agents of 200 MiB.
    assert gov.snapshot()["target"] == 1000
    # New agents reuse what the burst left: no growth, so a lower estimate, not a higher one.
    again = await hold(gov, "u", 99)
    await gov.tick()
    assert gov.per_agent_estimate < 1.9 * MiB
    # One agent of 100 replaced while the RSS jitters by 20 MiB: not 20 MiB an agent.
    await again.pop().done()
    await gov.tick()
    again += await hold(gov, "u", 1)
    source.set(daemon_rss=420 * MiB)
    await gov.tick()
    assert gov.in_flight == 100 and gov.per_agent_estimate < 1.9 * MiB
    for h in [burst[0], *again]:
        await h.done()


# --- slots: fairness, cancellation, errors -----------------------------------------------


async def test_a_large_task_cannot_starve_a_small_one() -> None:
    gov, *_ = make(ceiling=1, floor=1)
    order: list[str] = []

    async def agent(task_id: str, i: int) -> None:
        async with gov.slot(task_id):
            order.append(f"{task_id}{i}")
            await asyncio.sleep(0)

    (holder,) = await hold(gov, "A")
    big = [asyncio.create_task(agent("A", i)) for i in range(10)]
    await settle()
    small = asyncio.create_task(agent("B", 0))
    await settle()
    assert gov.waiting == 11
    await holder.done()
    await asyncio.gather(*big, small)
    assert order.index("B0") <= 1, order  # not behind A's ten
    assert [x for x in order if x.startswith("A")] == [f"A{i}" for i in range(10)]  # FIFO
    assert gov.in_flight == 0 and gov.waiting == 0


async def test_next_slot_goes_to_the_task_with_fewest_running() -> None:
    gov, *_ = make(ceiling=3, floor=1)
    a_running = await hold(gov, "A", 3)
    a_waiting = [Holder(gov, "A") for _ in range(5)]
    await settle()
    b = Holder(gov, "B")
    await settle()
    await a_running[0].done()
    await settle()
    assert b.entered.is_set()  # B has none running, A has two: B goes first
    assert not any(h.entered.is_set() for h in a_waiting)
    for h in [*a_running[1:], b]:
        await h.done()
    for h in a_waiting:
        await h.done()
    assert gov.in_flight == 0


async def test_cancelled_waiter_leaves_no_trace() -> None:
    gov, *_ = make(ceiling=1, floor=1)
    (holder,) = await hold(gov, "A")
    waiter = Holder(gov, "B")
    await settle()
    assert gov.waiting == 1 and gov.in_flight == 1
    waiter.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter.task
    assert gov.waiting == 0 and gov.in_flight == 1
    assert gov.snapshot()["waiting"] == 0
    await holder.done()
    assert gov.in_flight == 0
    # The slot is free for the next one at once.
    async with asyncio.timeout(5), gov.slot("C"):
        assert gov.in_flight == 1
    assert gov.in_flight == 0


async def test_waiter_cancelled_as_it_is_granted_hands_the_slot_back() -> None:
    gov, *_ = make(ceiling=1, floor=1)
    async with gov.slot("A"):
        first = Holder(gov, "B")
        second = Holder(gov, "C")
        await settle()
    # Leaving the block granted the slot to `first`, which has not run yet: no await since.
    assert gov.in_flight == 1 and gov.waiting == 1
    first.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first.task
    assert not first.entered.is_set()
    await asyncio.wait_for(second.entered.wait(), 5)  # the slot went on, not lost
    await second.done()
    assert gov.in_flight == 0 and gov.waiting == 0


async def test_slot_is_released_when_the_agent_fails_or_is_cancelled() -> None:
    gov, *_ = make(ceiling=1, floor=1)
    with pytest.raises(RuntimeError):
        async with gov.slot("t"):
            raise RuntimeError("agent failed")
    assert gov.in_flight == 0
    (running,) = await hold(gov, "t")
    running.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running.task
    assert gov.in_flight == 0


# --- ceiling at runtime ------------------------------------------------------------------


async def test_set_ceiling_at_runtime() -> None:
    gov, source, _clock, events = make(cooldown_s=5.0)
    await gov.tick()
    running = await hold(gov, "t", 3)

    gov.set_ceiling(2)
    assert gov.limit == 2 and gov.snapshot()["ceiling"] == 2
    assert events[-1]["reason"] == "lowered 5 -> 2: ceiling set to 2 (was 5)"
    assert events[-1]["cause"] == "ceiling"
    assert gov.in_flight == 3  # over the new ceiling, but nobody is stopped
    late = Holder(gov, "u")
    await settle()
    assert not late.entered.is_set()

    gov.set_ceiling(8)  # the limit sat at the ceiling: it follows at once
    assert gov.limit == 8
    await asyncio.wait_for(late.entered.wait(), 5)

    source.set(used_fraction=0.90)
    await gov.tick()
    assert gov.limit == 1
    gov.set_ceiling(10)  # memory holds the limit down: a higher ceiling changes nothing now
    assert gov.limit == 1

    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=r"concurrency\.ceiling"):
            gov.set_ceiling(bad)  # type: ignore[arg-type]
    for h in [*running, late]:
        await h.done()


async def test_set_ceiling_below_floor_is_refused() -> None:
    gov, *_ = make(ceiling=5, floor=3)
    with pytest.raises(ValueError, match=r"below concurrency\.floor \(3\)"):
        gov.set_ceiling(2)
    gov.set_ceiling(3)
    assert gov.limit == 3


# --- visibility --------------------------------------------------------------------------


async def test_snapshot_shape() -> None:
    gov, source, _clock, _events = make()
    before = gov.snapshot()
    assert before["memory"]["total"] is None and before["last_change"] is None
    assert before["limit"] == 5
    await gov.tick()
    source.set(used_fraction=0.90)
    await gov.tick()
    snap = gov.snapshot()
    assert set(snap) >= {
        "limit",
        "ceiling",
        "floor",
        "in_flight",
        "waiting",
        "memory",
        "reason",
        "paused",
        "last_change",
    }
    assert set(snap["memory"]) >= {
        "total",
        "available",
        "used_fraction",
        "daemon_rss",
        "per_agent_estimate",
        "source",
    }
    assert snap["limit"] == 1 and snap["ceiling"] == 5 and snap["floor"] == 1
    assert snap["in_flight"] == 0 and snap["waiting"] == 0 and snap["paused"] is False
    assert snap["memory"]["total"] == TOTAL
    assert snap["memory"]["used_fraction"] == pytest.approx(0.90, abs=1e-3)
    assert snap["memory"]["daemon_rss"] == 200 * MiB
    assert snap["memory"]["per_agent_estimate"] == AGENT
    assert snap["memory"]["source"] == "machine"
    assert snap["last_change"]["old"] == 5 and snap["last_change"]["new"] == 1
    assert "above soft 0.80" in snap["reason"]
    json.dumps(snap)  # the API returns it as is


async def test_stats_report_tick_cost_and_reaction_time() -> None:
    gov, source, clock, _events = make()
    await gov.tick()
    source.set(used_fraction=0.90)  # stamped with the fake clock's time
    clock.advance(0.2)  # the next reading comes 0.2 s later
    await gov.tick()
    stats = gov.stats()
    assert stats["ticks"] == 2 and stats["lowerings"] == 1 and stats["raises"] == 0
    assert stats["lower_reaction_s"]["last"] == pytest.approx(0.2)
    assert stats["tick_cpu_s"]["count"] == 2 and stats["tick_cpu_s"]["total"] >= 0
    assert gov.snapshot()["last_change"]["reaction_s"] == pytest.approx(0.2)


async def test_the_loop_reads_on_its_own_and_survives_failures() -> None:
    source = ScriptedSource(total=TOTAL)
    source.set(used_fraction=0.25)
    events: list[dict[str, Any]] = []

    def broken_listener(event: dict[str, Any]) -> None:
        events.append(event)
        raise RuntimeError("listener bug")

    gov = Governor(ConcurrencySettings(interval_ms=10), source=source, on_change=broken_listener)
    await gov.start()
    try:
        assert gov.stats()["ticks"] >= 1  # start reads before anything is dispatched
        source.fail(OSError("no /proc"))
        await wait_until(lambda: gov.stats()["reading_errors"] >= 2)
        assert "reading failed" in gov.snapshot()["reason"] and gov.limit == 5
        source.fail(None)
        source.set(used_fraction=0.90)
        await wait_until(lambda: gov.limit == 1)
        assert events and events[-1]["new"] == 1
    finally:
        await gov.stop()
    ticks = gov.stats()["ticks"]
    await asyncio.sleep(0.05)
    assert gov.stats()["ticks"] == ticks  # stopped


# --- settings ----------------------------------------------------------------------------


def test_settings_from_config() -> None:
    assert ConcurrencySettings.from_config({}) == ConcurrencySettings()
    assert ConcurrencySettings.from_config(None) == ConcurrencySettings()
    s = ConcurrencySettings.from_config({"ceiling": 3, "hard": 1, "cooldown_s": 2})
    assert s.ceiling == 3 and s.hard == 1.0 and s.cooldown_s == 2.0
    bad: list[tuple[dict[str, Any], str]] = [
        ({"ceiling": "5"}, "concurrency.ceiling"),
        ({"ceiling": True}, "concurrency.ceiling"),
        ({"ceiling": 0}, "concurrency.ceiling"),
        ({"floor": 6}, "concurrency.floor"),
        ({"soft": 0.9, "hard": 0.8}, "concurrency.soft"),
        ({"hard": 1.5}, "concurrency.hard"),
        ({"interval_ms": 1}, "concurrency.interval_ms"),
        ({"reserve_bytes": -1}, "concurrency.reserve_bytes"),
        ({"cooldown_s": "soon"}, "concurrency.cooldown_s"),
        ({"bogus": 1}, "unknown key 'concurrency.bogus'"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            ConcurrencySettings.from_config(section)


def test_shipped_config_matches_the_settings_defaults() -> None:
    shipped = tomllib.loads((ROOT / "config" / "default.toml").read_text())["concurrency"]
    assert ConcurrencySettings.from_config(shipped) == ConcurrencySettings()


# --- the real source ---------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_and_working_set(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "a" / "memory.max", "max\n")
    leaf = root / "a" / "b"
    _write(leaf / "memory.max", f"{GiB}\n")
    _write(leaf / "memory.current", f"{512 * MiB}\n")
    _write(leaf / "memory.stat", f"anon 1\nactive_file 5\ninactive_file {100 * MiB}\n")
    dirs = cgroup_dirs("0::/a/b\n", root)
    assert [d for _v, d in dirs] == [leaf, root / "a", root]
    cg = read_cgroup(dirs)
    assert cg is not None and cg.limit == GiB and cg.used == 412 * MiB
    assert cg.path == str(leaf)

    # A tighter limit on a parent (a slice, a container) binds the child.
    _write(root / "a" / "memory.max", f"{600 * MiB}\n")
    _write(root / "a" / "memory.current", f"{550 * MiB}\n")
    cg = read_cgroup(dirs)
    assert cg is not None and cg.limit == 600 * MiB and cg.available == 50 * MiB

    assert read_cgroup(cgroup_dirs("0::/elsewhere\n", tmp_path / "none")) is None


def test_cgroup_v1_and_unlimited(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    mem = root / "memory" / "docker" / "x"
    _write(mem / "memory.limit_in_bytes", "9223372036854771712\n")
    _write(mem / "memory.usage_in_bytes", f"{GiB}\n")
    text = "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n0::/\n"
    assert read_cgroup(cgroup_dirs(text, root)) is None  # v1's "unlimited"
    _write(mem / "memory.limit_in_bytes", f"{2 * GiB}\n")
    _write(mem / "memory.stat", f"cache 1\ntotal_inactive_file {GiB // 2}\n")
    cg = read_cgroup(cgroup_dirs(text, root))
    assert cg is not None and cg.limit == 2 * GiB and cg.used == GiB // 2


def test_psutil_source_prefers_a_tighter_cgroup(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _write(proc / str(os.getpid()) / "cgroup", "0::/job\n")
    cg = tmp_path / "cg"
    _write(cg / "cgroup.controllers", "memory\n")
    _write(cg / "job" / "memory.max", f"{GiB}\n")
    _write(cg / "job" / "memory.current", f"{256 * MiB}\n")
    reading = PsutilSource(os.getpid(), cgroup_root=cg, proc_root=proc).read()
    assert reading.source == "cgroup"
    assert reading.total == GiB and reading.available == 768 * MiB
    assert reading.daemon_rss > 0

    machine = PsutilSource(os.getpid(), cgroup_root=tmp_path / "none", proc_root=proc).read()
    assert machine.source == "machine" and machine.total > 0
    assert isinstance(machine, MemoryReading)


async def wait_until(predicate: Callable[[], bool], within_s: float = 30.0) -> None:
    """Poll `predicate` (the governor's state has no event to wait on) until true."""
    for _ in range(int(within_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {within_s}s")


HOG = """
import sys
data = b"x" * int(sys.argv[1])  # written, so every page is resident
print("ready", flush=True)
sys.stdin.read()  # hold until the parent closes stdin
"""


@pytest.mark.slow
async def test_real_memory_pressure_lowers_the_limit_and_it_comes_back() -> None:
    probe = PsutilSource()
    start = await asyncio.to_thread(probe.read)
    # Large, with soft half of it below where the child pushes usage: other processes of the
    # test run (daemons starting and ending beside this test) move used memory by hundreds of
    # MiB, and must not hide the child's pressure.
    alloc = 2048 * MiB
    if start.available < 4 * alloc:
        # Not a missing tool: free memory is the moment's, not the machine's (CI has 24 GiB).
        # Pushing a machine already short of memory further would only test the OOM killer.
        pytest.skip(f"needs {4 * alloc // MiB} MiB available, has {start.available // MiB}")
    ceiling = 4
    # Soft sits where, right now, exactly `ceiling` agents fit with half the child's
    # allocation to spare: the child pushes usage past it, wherever this machine stands.
    soft = (start.used + ceiling * AGENT + alloc // 2) / start.total
    settings = ConcurrencySettings(
        ceiling=ceiling,
        floor=1,
        interval_ms=50,
        soft=soft,
        hard=1.0,
        cooldown_s=0.2,
        min_agent_bytes=AGENT,
    )
    events: list[dict[str, Any]] = []
    gov = Governor(settings, on_change=events.append)  # the real psutil source
    await gov.start()
    child: asyncio.subprocess.Process | None = None
    try:
        await wait_until(lambda: gov.limit == ceiling)
        rss_before = gov.snapshot()["memory"]["daemon_rss"]

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOG,
            str(alloc),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None and child.stdin is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"

        await wait_until(lambda: gov.limit < ceiling)
        lowered = [e for e in events if e["new"] < e["old"]]
        assert lowered and lowered[0]["reason"].startswith(f"lowered {ceiling} -> ")
        # The child counts as the daemon's own memory (descendants are included).
        await wait_until(lambda: gov.snapshot()["memory"]["daemon_rss"] >= rss_before + 0.8 * alloc)

        child.stdin.close()
        await child.wait()
        child = None
        await wait_until(lambda: gov.limit == ceiling)
        raised = [e for e in events if e["new"] > e["old"]]
        assert raised and all(e["new"] == e["old"] + 1 for e in raised)  # step by step
        assert gov.snapshot()["memory"]["source"] in ("machine", "cgroup")
    finally:
        await gov.stop()
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
