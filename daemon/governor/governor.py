"""The concurrency governor: the one place that decides how many agents may run now.

Every agent dispatch of every task passes `Governor.slot(task_id)`. The governor holds a limit
between the configured floor and ceiling and moves it with memory pressure:

- Every `interval_ms` it takes a reading (in a worker thread, never on the event loop): memory
  total and available (the machine's, or the cgroup's when a tighter cgroup limit applies) and
  the resident memory of the daemon with all its descendants.
- From the daemon's growth while agents run it keeps a smoothed estimate of what one agent
  costs, never below `min_agent_bytes`.
- The limit is what fits under the soft threshold: with
  `headroom = soft * total - used - reserve_bytes`, the limit is
  `in_flight + floor(headroom / per_agent)`, clamped to `[floor, ceiling]`. At or above the
  hard threshold the limit is 0: nothing new is dispatched.
- Lowering is immediate. Raising is one step at a time, and only once the room has been there
  for a whole cool-down since the last change: a reading that dips and recovers never makes
  the limit flap.
- Running agents are never killed or interrupted; a lower limit only holds back new ones.
- Waiters are served fairly across tasks: the next slot goes to the task with the fewest
  agents running (ties by round-robin), and in arrival order within a task. A task that queues
  many agents cannot starve one submitted after it.

Defaults and why:

- `soft = 0.80`: Dask pauses a worker (stops starting tasks on it) at 80 % of its memory, after
  spilling at 70 %. Below 80 % the governor runs up to the ceiling; above it, only what fits.
  tierd runs on a developer's own machine next to an editor and a browser, so it gives way
  early rather than late.
- `hard = 0.95`: Ray's memory monitor kills workers at 95 % and Dask terminates them there; it is
  the last point before the kernel starts swapping or OOM-killing. tierd never kills: at 95 % it
  only stops dispatching, and the 15 % between soft and hard is room for agents already running
  to finish growing.
- `cooldown_s = 5.0`: twenty readings at the default interval. A model call lasts seconds, so
  within a cool-down finished agents have released their memory and the estimate has seen new
  ones grow; from the floor back to the default ceiling of 5 takes 20 s, short next to a task
  that runs for minutes.
- `min_agent_bytes = 64 MiB`: an agent that only waits on an HTTP model call costs the daemon
  a few MiB, but one that runs a tool (a test suite, a build) costs far more, and the first
  readings of a new agent show it before it has grown. 64 MiB keeps the estimate conservative
  until real growth is observed.
- `reserve_bytes = 0`: the soft threshold already leaves 20 % of memory to everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

from daemon.config.layers import ConfigError
from daemon.governor.memory import MemoryReading, MemorySource, MiB, default_source

log = logging.getLogger("tierd.governor")

#: Smoothing of the per-agent estimate. It rises fast (half the gap per reading) and falls
#: slowly (a tenth): underestimating an agent's cost is what runs a machine out of memory,
#: overestimating only keeps one agent waiting a little longer.
EWMA_UP = 0.5
EWMA_DOWN = 0.1


@dataclass(frozen=True)
class ConcurrencySettings:
    """The `[concurrency]` section of the config (see the module docstring for the defaults)."""

    ceiling: int = 5
    floor: int = 1
    interval_ms: int = 250
    soft: float = 0.80
    hard: float = 0.95
    reserve_bytes: int = 0
    cooldown_s: float = 5.0
    min_agent_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(f"'concurrency.{key}' {message}", key=f"concurrency.{key}")

        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise bad(f.name, f"must be an integer, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f.name, f"must be a number, not {value!r}")
            elif not math.isfinite(value):
                raise bad(f.name, f"must be a finite number, not {value!r}")
        if self.ceiling < 1:
            raise bad("ceiling", f"must be at least 1, not {self.ceiling}")
        if self.floor < 0:
            raise bad("floor", f"must be at least 0, not {self.floor}")
        if self.floor > self.ceiling:
            raise bad(
                "floor", f"({self.floor}) must not exceed concurrency.ceiling ({self.ceiling})"
            )
        if self.interval_ms < 10:
            raise bad("interval_ms", f"must be at least 10, not {self.interval_ms}")
        if not 0.0 < self.soft <= 1.0:
            raise bad("soft", f"must be a fraction in (0, 1], not {self.soft}")
        if not 0.0 < self.hard <= 1.0:
            raise bad("hard", f"must be a fraction in (0, 1], not {self.hard}")
        if self.soft > self.hard:
            raise bad("soft", f"({self.soft}) must not exceed concurrency.hard ({self.hard})")
        if self.reserve_bytes < 0:
            raise bad("reserve_bytes", f"must be at least 0, not {self.reserve_bytes}")
        if self.cooldown_s < 0:
            raise bad("cooldown_s", f"must be at least 0, not {self.cooldown_s}")
        if self.min_agent_bytes < 1:
            raise bad("min_agent_bytes", f"must be at least 1, not {self.min_agent_bytes}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ConcurrencySettings:
        """Settings from the `[concurrency]` table; missing keys take the defaults.

        Raises ConfigError (a ValueError) naming the key for an unknown key or a bad value.
        """
        section = dict(section or {})
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in known:
                raise ConfigError(
                    f"unknown key 'concurrency.{key}'; known keys: "
                    + ", ".join(f"concurrency.{k}" for k in known),
                    key=f"concurrency.{key}",
                )
            # TOML writes 5 for 5.0: accept integers where a number is expected.
            if known[key].type in ("float", float) and type(value) is int:
                value = float(value)
            values[key] = value
        return cls(**values)


@dataclass
class _Timing:
    """Running figures of one measured quantity, for `stats()`."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0
    max: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.last = value
        self.max = max(self.max, value)

    def as_dict(self) -> dict[str, float | int]:
        mean = self.total / self.count if self.count else 0.0
        return {
            "count": self.count,
            "last": self.last,
            "mean": mean,
            "max": self.max,
            "total": self.total,
        }


def _frac(value: float, threshold: float) -> str:
    """A fraction for a reason string, precise enough not to read as equal to `threshold`."""
    text = f"{value:.2f}"
    if text == f"{threshold:.2f}" and value != threshold:
        text = f"{value:.3f}"
    return text


def _mib(n: float) -> str:
    return f"{n / MiB:.0f} MiB"


class Governor:
    """Grants agent slots under a limit that follows memory pressure.

    `on_change(event)` is called on the event loop for every change of the limit, with
    `old`, `new`, `reason` ("lowered 5 -> 2: memory used 0.83 above soft 0.80"), `cause`
    ("memory" or "ceiling"), the readings that led to it and `reaction_s` (see `stats`).
    `clock` is injectable so tests can step through cool-downs.
    """

    def __init__(
        self,
        settings: ConcurrencySettings | None = None,
        source: MemorySource | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ConcurrencySettings()
        self._source = source if source is not None else default_source()
        self._on_change = on_change
        self._clock = clock
        # Until the first reading there is nothing to hold back for; `start` reads at once.
        self._limit = self.settings.ceiling
        self._target = self.settings.ceiling
        self._reason = "no reading yet"
        self._in_flight = 0
        self._running: Counter[str] = Counter()
        # Waiters per task; the dict's order is the round-robin order across tasks.
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._reading: MemoryReading | None = None
        self._per_agent = float(self.settings.min_agent_bytes)
        self._idle_rss: int | None = None
        # Since when (on `clock`) the readings have allowed more than the limit, without a break.
        self._room_since: float | None = None
        self._last_change_at = -math.inf
        self._last_change: dict[str, Any] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._ticks = 0
        self._reading_errors = 0
        self._lowerings = 0
        self._raises = 0
        self._tick_cpu = _Timing()
        self._tick_wall = _Timing()
        self._lower_reaction = _Timing()

    # --- slots -----------------------------------------------------------------------------

    def slot(self, task_id: str) -> AbstractAsyncContextManager[None]:
        """Wait for a slot for one agent of `task_id`; hold it for the `async with` body.

        A waiter cancelled while waiting leaves the queue (and hands back a slot granted to it
        at that same moment). The slot is released when the body ends, however it ends.
        """
        return self._slot(task_id)

    @asynccontextmanager
    async def _slot(self, task_id: str) -> AsyncIterator[None]:
        await self._acquire(task_id)
        try:
            yield
        finally:
            self._release(task_id)

    async def _acquire(self, task_id: str) -> None:
        # No barging: with anyone waiting, a newcomer queues behind them.
        if not self._queues and self._in_flight < self._limit:
            self._grant(task_id)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(task_id, deque()).append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # Granted in the same loop iteration the waiter was cancelled: give it back.
                self._release(task_id)
            else:
                self._forget(task_id, fut)
            raise

    def _grant(self, task_id: str) -> None:
        self._in_flight += 1
        self._running[task_id] += 1

    def _release(self, task_id: str) -> None:
        self._in_flight -= 1
        self._running[task_id] -= 1
        if self._running[task_id] <= 0:
            del self._running[task_id]
        self._dispatch()

    def _forget(self, task_id: str, fut: asyncio.Future[None]) -> None:
        queue = self._queues.get(task_id)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(fut)
        if not queue:
            del self._queues[task_id]

    def _dispatch(self) -> None:
        """Hand free slots to waiters: fewest running first, round-robin among equals."""
        while self._in_flight < self._limit and self._queues:
            # min() keeps the first of equals, and the dict is in round-robin order.
            task_id = min(self._queues, key=lambda t: self._running[t])
            queue = self._queues.pop(task_id)
            fut = queue.popleft()
            if queue:
                self._queues[task_id] = queue  # to the back of the round
            if fut.done():  # pragma: no cover - cancelled waiters remove themselves
                continue
            fut.set_result(None)
            self._grant(task_id)

    # --- readings and the limit ------------------------------------------------------------

    async def start(self) -> None:
        """Take a first reading, then keep reading every `interval_ms` until `stop`."""
        if self._loop_task is not None:
            return
        await self.tick()
        self._loop_task = asyncio.create_task(self._run(), name="tierd-governor")

    async def stop(self) -> None:
        """Stop reading. Slots keep working at the last limit; running agents are untouched."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_ms / 1000)
            try:
                await self.tick()
            except Exception:  # pragma: no cover - tick handles its own failures
                log.exception("governor tick failed")

    def _read(self) -> tuple[MemoryReading, float]:
        # Runs in a worker thread; the thread's own CPU time is the cost of the reading.
        cpu0 = time.thread_time()
        reading = self._source.read()
        return reading, time.thread_time() - cpu0

    async def tick(self) -> None:
        """Take one reading and move the limit if it calls for it."""
        wall0 = time.perf_counter()
        taken_at = self._clock()
        in_flight_at_read = self._in_flight
        try:
            reading, read_cpu = await asyncio.to_thread(self._read)
        except Exception as exc:
            self._reading_errors += 1
            self._reason = f"reading failed ({exc!r}); limit held at {self._limit}"
            log.warning("governor reading failed: %r", exc)
            return
        # No await from here on: the decision is atomic on the loop, and its CPU is this
        # thread's alone.
        cpu0 = time.thread_time()
        self._apply(reading, taken_at, in_flight_at_read)
        self._ticks += 1
        self._tick_cpu.add(read_cpu + time.thread_time() - cpu0)
        self._tick_wall.add(time.perf_counter() - wall0)

    def _apply(self, reading: MemoryReading, taken_at: float, in_flight_at_read: int) -> None:
        previous = self._reading
        self._reading = reading
        self._update_estimate(reading, in_flight_at_read)
        # The moment these figures appeared: when the source stamps its figures and these are
        # new since the previous reading, the stamp; else the start of this reading.
        seen_at = taken_at
        changed_at = reading.changed_at
        if changed_at is not None and reading != previous:
            seen_at = min(changed_at, taken_at)
        target, why = self._compute_target(reading)
        self._target = target
        now = self._clock()
        if target < self._limit:
            self._room_since = None
            self._change(target, why, "memory", now, seen_at)
        elif target > self._limit:
            if self._room_since is None:
                self._room_since = seen_at
            ready_at = max(self._room_since, self._last_change_at) + self.settings.cooldown_s
            if now >= ready_at:
                self._change(self._limit + 1, why, "memory", now, self._room_since)
        else:
            self._room_since = None
        self._reason = self._describe(why)

    def _update_estimate(self, reading: MemoryReading, in_flight: int) -> None:
        if in_flight == 0:
            # The daemon idle is the baseline that agents' growth is measured from.
            self._idle_rss = reading.daemon_rss
            return
        if self._idle_rss is None:
            return
        sample = max(0.0, (reading.daemon_rss - self._idle_rss) / in_flight)
        alpha = EWMA_UP if sample > self._per_agent else EWMA_DOWN
        self._per_agent += alpha * (sample - self._per_agent)

    @property
    def per_agent_estimate(self) -> int:
        """Bytes one more agent is expected to cost (smoothed, never below the minimum)."""
        return int(max(self._per_agent, self.settings.min_agent_bytes))

    def _compute_target(self, reading: MemoryReading) -> tuple[int, str]:
        """The limit these figures allow, and why, ignoring the cool-down."""
        s = self.settings
        frac = reading.used_fraction
        if frac >= s.hard:
            return 0, f"memory used {_frac(frac, s.hard)} above hard {s.hard:.2f}"
        per_agent = self.per_agent_estimate
        headroom = s.soft * reading.total - reading.used - s.reserve_bytes
        more = math.floor(headroom / per_agent)
        target = max(s.floor, min(s.ceiling, self._in_flight + more))
        if frac >= s.soft:
            why = f"memory used {_frac(frac, s.soft)} above soft {s.soft:.2f}"
        elif more <= 0 and s.reserve_bytes:
            why = (
                f"memory used {_frac(frac, s.soft)} plus reserve {_mib(s.reserve_bytes)} "
                f"reaches soft {s.soft:.2f}"
            )
        elif target < s.ceiling:
            why = (
                f"memory used {_frac(frac, s.soft)}: room under soft {s.soft:.2f} for "
                f"{max(more, 0)} more agent(s) of ~{_mib(per_agent)}"
            )
        else:
            why = f"memory used {_frac(frac, s.soft)} below soft {s.soft:.2f}"
        return target, why

    def _describe(self, why: str) -> str:
        if self._limit == 0:
            return f"paused: {why}"
        if self._target > self._limit:
            return (
                f"raising to {self._target} one step per {self.settings.cooldown_s:g}s "
                f"cool-down: {why}"
            )
        if self._limit == self.settings.ceiling:
            return f"at ceiling: {why}"
        return f"held at {self._limit}: {why}"

    def _change(self, new: int, why: str, cause: str, now: float, since: float | None) -> None:
        old = self._limit
        if new == old:
            return
        self._limit = new
        self._last_change_at = now
        reaction = max(0.0, now - since) if since is not None else None
        if new < old:
            self._lowerings += 1
            if reaction is not None:
                self._lower_reaction.add(reaction)
        else:
            self._raises += 1
        verb = "lowered" if new < old else "raised"
        r = self._reading
        event: dict[str, Any] = {
            "old": old,
            "new": new,
            "reason": f"{verb} {old} -> {new}: {why}",
            "cause": cause,
            "ceiling": self.settings.ceiling,
            "in_flight": self._in_flight,
            "waiting": self.waiting,
            "used_fraction": round(r.used_fraction, 4) if r else None,
            "per_agent_estimate": self.per_agent_estimate,
            "reaction_s": reaction,
            "at": time.time(),
        }
        self._last_change = event
        log.info("concurrency %s", event["reason"])
        if self._on_change is not None:
            try:
                self._on_change(dict(event))
            except Exception:
                # A broken listener must not stop the governor from governing.
                log.exception("governor on_change callback failed")
        self._dispatch()

    # --- runtime control and visibility ----------------------------------------------------

    def set_ceiling(self, n: int) -> None:
        """Change the ceiling now. Lowering takes effect at once; running agents are kept.

        When the limit sat at the old ceiling (memory was not holding it down), it moves to
        the new ceiling at once, as far as memory allows; otherwise it keeps climbing one step
        per cool-down. Raises ValueError for anything but an integer in [floor, ...].
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"concurrency.ceiling must be an integer, not {n!r}")
        if n < 1:
            raise ValueError(f"concurrency.ceiling must be at least 1, not {n}")
        if n < self.settings.floor:
            raise ValueError(
                f"concurrency.ceiling ({n}) must not be below concurrency.floor "
                f"({self.settings.floor}); lower the floor first"
            )
        old_ceiling = self.settings.ceiling
        if n == old_ceiling:
            return
        self.settings = replace(self.settings, ceiling=n)
        if self._reading is not None:
            target, why = self._compute_target(self._reading)
        else:
            target, why = n, "no reading yet"
        self._target = target
        now = self._clock()
        ceiling_why = f"ceiling set to {n} (was {old_ceiling})"
        if target < self._limit:
            self._change(target, ceiling_why if target == n else why, "ceiling", now, now)
        elif target > self._limit and self._limit == old_ceiling:
            self._change(target, ceiling_why, "ceiling", now, now)
        self._reason = self._describe(why)
        self._dispatch()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def snapshot(self) -> dict[str, Any]:
        """The governor's state, JSON-ready: what `daemon/status` shows."""
        r = self._reading
        s = self.settings
        return {
            "limit": self._limit,
            "target": self._target,
            "ceiling": s.ceiling,
            "floor": s.floor,
            "in_flight": self._in_flight,
            "waiting": self.waiting,
            "memory": {
                "total": r.total if r else None,
                "available": r.available if r else None,
                "used_fraction": round(r.used_fraction, 4) if r else None,
                "daemon_rss": r.daemon_rss if r else None,
                "per_agent_estimate": self.per_agent_estimate,
                "source": r.source if r else None,
                "soft": s.soft,
                "hard": s.hard,
                "reserve_bytes": s.reserve_bytes,
            },
            "reason": self._reason,
            "paused": self._limit == 0,
            "last_change": dict(self._last_change) if self._last_change else None,
        }

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks.

        - `tick_cpu_s`: CPU time of each tick: the reading (in its worker thread) plus the
          decision (on the loop); `tick_wall_s`: wall time of each tick, thread hop included.
        - `lower_reaction_s`: for each lowering, the time from the figures that caused it to
          the limit's change. For a source that stamps its figures with the moment they
          changed (`ScriptedSource` does) this is end to end, the wait for the next reading
          included; for the real source, which cannot know, it runs from the start of the
          reading that first showed them (add up to `interval_ms` for the end-to-end worst
          case).
        """
        return {
            "ticks": self._ticks,
            "reading_errors": self._reading_errors,
            "lowerings": self._lowerings,
            "raises": self._raises,
            "interval_ms": self.settings.interval_ms,
            "tick_cpu_s": self._tick_cpu.as_dict(),
            "tick_wall_s": self._tick_wall.as_dict(),
            "lower_reaction_s": self._lower_reaction.as_dict(),
        }
