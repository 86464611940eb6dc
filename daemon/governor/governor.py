"""The concurrency governor: the one place that decides how many agents may run now.

Every agent dispatch of every task passes `Governor.slot(task_id)`. The governor holds a limit
between the configured floor and ceiling and moves it with memory pressure:

- Every `interval_ms` it takes a reading (in a worker thread, never on the event loop): memory
  total and available (the machine's, or the cgroup's when a tighter cgroup limit applies) and
  the resident memory of the daemon with all its descendants (`sampler`).
- From the daemon's growth while agents run (counted from the last low: RSS does not fall when
  agents finish) it keeps a smoothed estimate of what one agent costs, never below
  `min_agent_bytes`.
- The limit is what fits under the soft threshold: with
  `headroom = soft * total - used - reserve_bytes`, the limit is
  `in_flight + floor(headroom / per_agent)`, clamped to `[floor, ceiling]`. At or above the
  hard threshold the limit is 0: nothing new is dispatched.
- Lowering is immediate. Raising is one step at a time, and only once the room has been there
  for a whole cool-down since the last change: a reading that dips and recovers never makes
  the limit flap (`policy`).
- Running agents are never killed or interrupted; a lower limit only holds back new ones.
- Waiters are served fairly across tasks: the next slot goes to the task with the fewest
  agents running (ties by round-robin), and in arrival order within a task. A task that queues
  many agents cannot starve one submitted after it (`slots`).

The defaults, and why, are in `daemon.governor.settings`. This module puts the parts together
and reports: the change events, `snapshot` for `daemon/status`, `stats` for benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from daemon.governor.memory import MemoryReading, MemorySource, default_source
from daemon.governor.policy import LimitPolicy, Move
from daemon.governor.sampler import Sampler, Timing
from daemon.governor.settings import ConcurrencySettings, check_ceiling
from daemon.governor.slots import SlotQueue

#: `ConcurrencySettings` is re-exported: the daemon and the bench import it from here.
__all__ = ["ConcurrencySettings", "Governor"]

log = logging.getLogger("tierd.governor")


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
        self._policy = LimitPolicy(settings or ConcurrencySettings())
        self._slots = SlotQueue(lambda: self._policy.limit)
        self._sampler = Sampler(source if source is not None else default_source(), clock)
        self._on_change = on_change
        self._clock = clock
        self._reason = "no reading yet"
        self._reading: MemoryReading | None = None
        self._last_change: dict[str, Any] | None = None
        self._lowerings = 0
        self._raises = 0
        self._lower_reaction = Timing()

    @property
    def settings(self) -> ConcurrencySettings:
        return self._policy.settings

    # --- slots -----------------------------------------------------------------------------

    def slot(self, task_id: str) -> AbstractAsyncContextManager[None]:
        """Wait for a slot for one agent of `task_id`; hold it for the `async with` body.

        A waiter cancelled while waiting leaves the queue (and hands back a slot granted to it
        at that same moment). The slot is released when the body ends, however it ends.
        """
        return self._slots.slot(task_id)

    @property
    def limit(self) -> int:
        return self._policy.limit

    @property
    def in_flight(self) -> int:
        return self._slots.in_flight

    @property
    def waiting(self) -> int:
        return self._slots.waiting

    # --- readings and the limit ------------------------------------------------------------

    async def start(self) -> None:
        """Take a first reading, then keep reading every `interval_ms` until `stop`."""
        if self._sampler.running:
            return
        await self.tick()
        self._sampler.start(self.tick, self.settings.interval_ms / 1000)

    async def stop(self) -> None:
        """Stop reading. Slots keep working at the last limit; running agents are untouched."""
        await self._sampler.stop()

    async def tick(self) -> None:
        """Take one reading and move the limit if it calls for it."""
        in_flight_at_read = self._slots.in_flight
        try:
            sample = await self._sampler.read()
        except Exception as exc:
            self._reason = f"reading failed ({exc!r}); limit held at {self.limit}"
            return
        with self._sampler.deciding(sample):
            self._apply(sample.reading, sample.taken_at, in_flight_at_read)

    def _apply(self, reading: MemoryReading, taken_at: float, in_flight_at_read: int) -> None:
        previous, self._reading = self._reading, reading
        # The moment these figures appeared: when the source stamps its figures and these are
        # new since the previous reading, the stamp; else the start of this reading.
        seen_at = taken_at
        if reading.changed_at is not None and reading != previous:
            seen_at = min(reading.changed_at, taken_at)
        now = self._clock()
        move, why = self._policy.on_reading(
            reading,
            in_flight_at_read=in_flight_at_read,
            in_flight=self._slots.in_flight,
            seen_at=seen_at,
            now=now,
        )
        if move is not None:
            self._change(move, "memory", now)
        self._reason = self._policy.describe(why)

    @property
    def per_agent_estimate(self) -> int:
        """Bytes one more agent is expected to cost (smoothed, never below the minimum)."""
        return self._policy.cost.bytes

    def _change(self, move: Move, cause: str, now: float) -> None:
        old, new = self._policy.limit, move.new
        if new == old:
            return
        self._policy.moved(new, now)
        reaction = max(0.0, now - move.since) if move.since is not None else None
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
            "reason": f"{verb} {old} -> {new}: {move.why}",
            "cause": cause,
            "ceiling": self.settings.ceiling,
            "in_flight": self.in_flight,
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
        self._slots.dispatch()

    # --- runtime control and visibility ----------------------------------------------------

    def set_ceiling(self, n: int) -> None:
        """Change the ceiling now. Lowering takes effect at once; running agents are kept.

        When the limit sat at the old ceiling (memory was not holding it down), it moves to
        the new ceiling at once, as far as memory allows; otherwise it keeps climbing one step
        per cool-down. Raises ValueError for anything but an integer in [floor, ...].
        """
        check_ceiling(n, self.settings.floor)
        if n == self.settings.ceiling:
            return
        now = self._clock()
        move, why = self._policy.set_ceiling(n, self._reading, self._slots.in_flight, now)
        if move is not None:
            self._change(move, "ceiling", now)
        self._reason = self._policy.describe(why)
        self._slots.dispatch()

    def snapshot(self) -> dict[str, Any]:
        """The governor's state, JSON-ready: what `daemon/status` shows."""
        r = self._reading
        s = self.settings
        return {
            "limit": self.limit,
            "target": self._policy.target,
            "ceiling": s.ceiling,
            "floor": s.floor,
            "in_flight": self.in_flight,
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
            "paused": self.limit == 0,
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
        sampled = self._sampler.stats()
        return {
            "ticks": sampled["ticks"],
            "reading_errors": sampled["reading_errors"],
            "lowerings": self._lowerings,
            "raises": self._raises,
            "interval_ms": self.settings.interval_ms,
            "tick_cpu_s": sampled["tick_cpu_s"],
            "tick_wall_s": sampled["tick_wall_s"],
            "lower_reaction_s": self._lower_reaction.as_dict(),
        }
