"""The governor's settings: the `[concurrency]` table of the config, checked.

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

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from daemon.config.layers import ConfigError
from daemon.governor.memory import MiB


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
        # Lazily chained: the first problem raises before any later check runs.
        for key, message in itertools.chain(self._type_problems(), self._range_problems()):
            raise ConfigError(f"'concurrency.{key}' {message}", key=f"concurrency.{key}")

    def _type_problems(self) -> Iterator[tuple[str, str]]:
        # Checked first: the range checks below compare values that must be numbers.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    yield f.name, f"must be an integer, not {value!r}"
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                yield f.name, f"must be a number, not {value!r}"
            elif not math.isfinite(value):
                yield f.name, f"must be a finite number, not {value!r}"

    def _range_problems(self) -> Iterator[tuple[str, str]]:
        if self.ceiling < 1:
            yield "ceiling", f"must be at least 1, not {self.ceiling}"
        if self.floor < 0:
            yield "floor", f"must be at least 0, not {self.floor}"
        if self.floor > self.ceiling:
            yield "floor", f"({self.floor}) must not exceed concurrency.ceiling ({self.ceiling})"
        if self.interval_ms < 10:
            yield "interval_ms", f"must be at least 10, not {self.interval_ms}"
        if not 0.0 < self.soft <= 1.0:
            yield "soft", f"must be a fraction in (0, 1], not {self.soft}"
        if not 0.0 < self.hard <= 1.0:
            yield "hard", f"must be a fraction in (0, 1], not {self.hard}"
        if self.soft > self.hard:
            yield "soft", f"({self.soft}) must not exceed concurrency.hard ({self.hard})"
        if self.reserve_bytes < 0:
            yield "reserve_bytes", f"must be at least 0, not {self.reserve_bytes}"
        if self.cooldown_s < 0:
            yield "cooldown_s", f"must be at least 0, not {self.cooldown_s}"
        if self.min_agent_bytes < 1:
            yield "min_agent_bytes", f"must be at least 1, not {self.min_agent_bytes}"

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
                value = _as_float(key, value)
            values[key] = value
        return cls(**values)


def _as_float(key: str, value: int) -> float:
    """An integer as a float; one too large for a float (310 digits) is a ConfigError."""
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(
            f"'concurrency.{key}' must be a finite number, not an integer too large for one",
            key=f"concurrency.{key}",
        ) from None


def check_ceiling(n: int, floor: int) -> None:
    """Raise ValueError unless `n` may be the ceiling at runtime (an integer, >= 1 and floor)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"concurrency.ceiling must be an integer, not {n!r}")
    if n < 1:
        raise ValueError(f"concurrency.ceiling must be at least 1, not {n}")
    if n < floor:
        raise ValueError(
            f"concurrency.ceiling ({n}) must not be below concurrency.floor "
            f"({floor}); lower the floor first"
        )
