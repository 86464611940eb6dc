"""The limit policy: how many agents the figures of a memory reading allow, and the
hysteresis that keeps the limit from flapping.

Pure: no event loop, no clock of its own, no I/O. The governor hands it each reading with the
time, and applies the moves it returns.

- From the daemon's growth while agents run (counted from the last low: RSS does not fall when
  agents finish) it keeps a smoothed estimate of what one agent costs, never below
  `min_agent_bytes` (`AgentCost`).
- The target is what fits under the soft threshold: with
  `headroom = soft * total - used - reserve_bytes`, the target is
  `in_flight + floor(headroom / per_agent)`, clamped to `[floor, ceiling]`. At or above the
  hard threshold it is 0: nothing new is dispatched.
- Lowering is immediate. Raising is one step at a time, and only once the room has been there
  for a whole cool-down since the last change: a reading that dips and recovers never makes
  the limit flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from daemon.governor.memory import MemoryReading, MiB
from daemon.governor.settings import ConcurrencySettings

#: Smoothing of the per-agent estimate. It rises fast (half the gap per reading) and falls
#: slowly (a tenth): underestimating an agent's cost is what runs a machine out of memory,
#: overestimating only keeps one agent waiting a little longer.
EWMA_UP = 0.5
EWMA_DOWN = 0.1


def _frac(value: float, threshold: float) -> str:
    """A fraction for a reason string, precise enough not to read as equal to `threshold`."""
    text = f"{value:.2f}"
    if text == f"{threshold:.2f}" and value != threshold:
        text = f"{value:.3f}"
    return text


def _mib(n: float) -> str:
    return f"{n / MiB:.0f} MiB"


class AgentCost:
    """The smoothed estimate of the memory one more agent costs.

    Each sample is the daemon's growth since a reference reading, divided by the agents added
    since. The reference is the last low: the daemon idle, or the last reading with fewer
    agents than the one before. Memory that finished agents free stays with the allocator, so
    the daemon's RSS does not fall when a burst drains; measured from the idle baseline, the
    few agents left at the end of a burst were charged with all the memory it left behind
    (then the limit stayed low long after), while new agents reuse that memory first. A sample
    needs at least a quarter of the running agents to be new since the reference: a running
    count that only wobbles would divide the RSS's own jitter by one or two agents.
    """

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self._per_agent = float(minimum)
        self._ref: tuple[int, int] | None = None  # (daemon RSS, agents running) at the last low
        self._last_in_flight = 0

    def observe(self, reading: MemoryReading, in_flight: int) -> None:
        """Learn from a reading taken while `in_flight` agents ran."""
        dropped = in_flight < self._last_in_flight
        self._last_in_flight = in_flight
        if self._ref is None or dropped or in_flight <= self._ref[1]:
            self._ref = (reading.daemon_rss, in_flight)
            return
        ref_rss, ref_in_flight = self._ref
        added = in_flight - ref_in_flight
        if 4 * added < in_flight:
            return
        sample = max(0.0, (reading.daemon_rss - ref_rss) / added)
        alpha = EWMA_UP if sample > self._per_agent else EWMA_DOWN
        self._per_agent += alpha * (sample - self._per_agent)

    @property
    def bytes(self) -> int:
        """Bytes one more agent is expected to cost (smoothed, never below the minimum)."""
        return int(max(self._per_agent, self.minimum))


def target_for(
    s: ConcurrencySettings, reading: MemoryReading, in_flight: int, per_agent: int
) -> tuple[int, str]:
    """The limit these figures allow, and why, ignoring the cool-down."""
    frac = reading.used_fraction
    if frac >= s.hard:
        return 0, f"memory used {_frac(frac, s.hard)} above hard {s.hard:.2f}"
    headroom = s.soft * reading.total - reading.used - s.reserve_bytes
    more = math.floor(headroom / per_agent)
    target = max(s.floor, min(s.ceiling, in_flight + more))
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


@dataclass(frozen=True)
class Move:
    """A change of the limit the policy calls for."""

    new: int
    why: str
    #: When the figures that call for it appeared (for the reaction time), if known.
    since: float | None


class LimitPolicy:
    """The limit, the target it moves towards, and the cool-down between raises."""

    def __init__(self, settings: ConcurrencySettings) -> None:
        self.settings = settings
        # Until the first reading there is nothing to hold back for.
        self.limit = settings.ceiling
        self.target = settings.ceiling
        self.cost = AgentCost(settings.min_agent_bytes)
        # Since when the readings have allowed more than the limit, without a break.
        self._room_since: float | None = None
        self._last_change_at = -math.inf

    def on_reading(
        self,
        reading: MemoryReading,
        *,
        in_flight_at_read: int,
        in_flight: int,
        seen_at: float,
        now: float,
    ) -> tuple[Move | None, str]:
        """The move a reading calls for (None: hold), and why the target is what it is.

        `in_flight_at_read` agents ran when the reading was taken (what the estimate learns
        from), `in_flight` run now; `seen_at` is when these figures appeared, `now` the time
        of the decision.
        """
        self.cost.observe(reading, in_flight_at_read)
        self.target, why = target_for(self.settings, reading, in_flight, self.cost.bytes)
        if self.target < self.limit:
            self._room_since = None
            return Move(self.target, why, seen_at), why
        if self.target == self.limit:
            self._room_since = None
            return None, why
        if self._room_since is None:
            self._room_since = seen_at
        ready_at = max(self._room_since, self._last_change_at) + self.settings.cooldown_s
        if now >= ready_at:
            return Move(self.limit + 1, why, self._room_since), why
        return None, why

    def set_ceiling(
        self, n: int, reading: MemoryReading | None, in_flight: int, now: float
    ) -> tuple[Move | None, str]:
        """The move a new ceiling calls for, and why the target is what it is.

        When the limit sat at the old ceiling (memory was not holding it down), it moves to
        the new ceiling at once, as far as memory allows; otherwise it keeps climbing one step
        per cool-down. A lower ceiling takes effect at once.
        """
        old_ceiling = self.settings.ceiling
        self.settings = replace(self.settings, ceiling=n)
        if reading is not None:
            self.target, why = target_for(self.settings, reading, in_flight, self.cost.bytes)
        else:
            self.target, why = n, "no reading yet"
        ceiling_why = f"ceiling set to {n} (was {old_ceiling})"
        if self.target < self.limit:
            return Move(self.target, ceiling_why if self.target == n else why, now), why
        if self.target > self.limit and self.limit == old_ceiling:
            return Move(self.target, ceiling_why, now), why
        return None, why

    def moved(self, new: int, now: float) -> None:
        """Record that the limit is now `new` (the cool-down runs from `now`)."""
        self.limit = new
        self._last_change_at = now

    def describe(self, why: str) -> str:
        """The governor's state in a sentence, for `daemon/status`."""
        if self.limit == 0:
            return f"paused: {why}"
        if self.target > self.limit:
            return (
                f"raising to {self.target} one step per {self.settings.cooldown_s:g}s "
                f"cool-down: {why}"
            )
        if self.limit == self.settings.ceiling:
            return f"at ceiling: {why}"
        return f"held at {self.limit}: {why}"
