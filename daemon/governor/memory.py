"""Memory readings for the governor: how much memory there is, and how much the daemon uses.

A `MemorySource` answers one question, synchronously: "what are the figures now?" The governor
calls it from a worker thread every `interval_ms`, so a source may read files and call psutil,
but it must stay cheap: a few hundred microseconds, not milliseconds.

- `PsutilSource` (the default) reads the machine's total and available memory, or, when the
  daemon runs inside a cgroup whose memory is limited, that limit and the cgroup's working set;
  and the resident memory of the daemon plus all its descendants (agents may run tools as
  subprocesses).
- `ScriptedSource` returns figures set by hand, for tests and benchmarks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import psutil

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

Source = Literal["machine", "cgroup"]

#: cgroup v1 writes "no limit" as a huge page-aligned number (2**63 rounded down to a page);
#: anything at or above this is treated as unlimited.
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryReading:
    """One set of figures, in bytes.

    `total` and `available` describe whatever bounds the daemon: the machine, or the cgroup's
    `memory.max` and what is left of it. `daemon_rss` is the resident memory of the daemon and
    all of its descendant processes.
    """

    total: int
    available: int
    daemon_rss: int
    source: Source = "machine"
    #: When the source knows the moment its figures changed (a scripted source does), that
    #: moment on the governor's clock; the governor measures its reaction time from it.
    changed_at: float | None = None

    @property
    def used(self) -> int:
        return max(0, self.total - self.available)

    @property
    def used_fraction(self) -> float:
        # A source that reports no memory at all is treated as full: the safe reading.
        return self.used / self.total if self.total > 0 else 1.0


class MemorySource(Protocol):
    """Where the governor gets its figures. `read` runs in a worker thread; keep it cheap."""

    def read(self) -> MemoryReading: ...


# --- cgroups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMemory:
    """The binding memory limit of a cgroup and the working set charged against it."""

    limit: int
    used: int
    path: str

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat_value(path: Path, *names: str) -> int:
    """The first of `names` found in a cgroup `memory.stat` file, else 0."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    values: dict[str, int] = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if key in names:
            try:
                values[key] = int(value)
            except ValueError:
                continue
    for name in names:
        if name in values:
            return values[name]
    return 0


def cgroup_dirs(proc_cgroup: str, root: Path) -> list[tuple[int, Path]]:
    """The memory cgroup directories of a process, leaf first, with their cgroup version.

    `proc_cgroup` is the text of /proc/<pid>/cgroup. Ancestors are included because a limit set
    on a parent (a systemd slice, a container) binds its children just as much. Directories that
    do not exist are skipped: inside a container without a cgroup namespace the listed path is
    the host's, and the container's own cgroup is mounted at the root.
    """
    found: list[tuple[int, Path]] = []
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, rel = parts
        if hierarchy == "0" and controllers == "":
            # Pure v2 mounts the unified hierarchy at the root; hybrid systems under "unified".
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            version = 2
        elif "memory" in controllers.split(","):
            base = root / "memory"
            version = 1
        else:
            continue
        rel_parts = [p for p in rel.split("/") if p]
        for depth in range(len(rel_parts), -1, -1):
            d = base.joinpath(*rel_parts[:depth])
            if d.is_dir() and (version, d) not in found:
                found.append((version, d))
    return found


def read_cgroup(dirs: list[tuple[int, Path]]) -> CgroupMemory | None:
    """The tightest memory limit among `dirs` (least left), or None when none is limited.

    Usage is the working set, as the kubelet and `docker stats` count it: the charged memory
    minus inactive file cache, which the kernel reclaims before it would OOM-kill anything.
    """
    best: CgroupMemory | None = None
    for version, d in dirs:
        if version == 2:
            limit = _read_int(d / "memory.max")
            if limit is None:
                continue
            current = _read_int(d / "memory.current")
            inactive = _stat_value(d / "memory.stat", "inactive_file")
        else:
            limit = _read_int(d / "memory.limit_in_bytes")
            if limit is None or limit >= _V1_UNLIMITED:
                continue
            current = _read_int(d / "memory.usage_in_bytes")
            inactive = _stat_value(d / "memory.stat", "total_inactive_file", "inactive_file")
        if current is None or limit <= 0:
            continue
        cg = CgroupMemory(limit=limit, used=max(0, current - inactive), path=str(d))
        if best is None or cg.available < best.available:
            best = cg
    return best


# --- the real source -----------------------------------------------------------------------


class PsutilSource:
    """Figures from psutil and the cgroup filesystem.

    Machine figures come from `psutil.virtual_memory()` (used = total - available, the kernel's
    own estimate of what can be given out without swapping). When a cgroup limit leaves less
    room than the machine does, the cgroup's figures count instead (`source="cgroup"`): that
    limit is where the OOM killer strikes.

    Finding the daemon's descendants means scanning every process on the machine, which costs
    about a millisecond per few hundred processes; the list is refreshed every
    `children_refresh_s` while the resident size of the known processes is read on every call
    (one small /proc read each). A new child is therefore counted within that delay, while its
    memory already shows in the machine's figures at once.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        cgroup_root: Path | str = "/sys/fs/cgroup",
        proc_root: Path | str = "/proc",
        children_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._process = psutil.Process(pid)
        self._pid = self._process.pid
        self._cgroup_root = Path(cgroup_root)
        self._proc_root = Path(proc_root)
        self._children_refresh_s = children_refresh_s
        self._clock = clock
        self._children: list[psutil.Process] = []
        self._scanned_at: float | None = None
        self._cgroup_dirs: list[tuple[int, Path]] | None = None
        # The governor reads from one thread at a time, but a benchmark may share a source.
        self._lock = threading.Lock()

    def _find_cgroup_dirs(self) -> list[tuple[int, Path]]:
        # A process's cgroup rarely changes, so the path is found once; limit and usage are
        # read on every call, since `systemctl set-property` can change the limit live.
        if self._cgroup_dirs is None:
            try:
                text = (self._proc_root / str(self._pid) / "cgroup").read_text()
            except OSError:
                text = ""
            self._cgroup_dirs = cgroup_dirs(text, self._cgroup_root)
        return self._cgroup_dirs

    def cgroup(self) -> CgroupMemory | None:
        """The binding cgroup limit and usage, or None outside a memory-limited cgroup."""
        return read_cgroup(self._find_cgroup_dirs())

    def tree_rss(self) -> int:
        """Resident bytes of the process and all its descendants (recursively)."""
        now = self._clock()
        if self._scanned_at is None or now - self._scanned_at >= self._children_refresh_s:
            try:
                self._children = self._process.children(recursive=True)
            except psutil.Error:
                self._children = []
            self._scanned_at = now
        total = 0
        for p in (self._process, *self._children):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                # Exited (or became a zombie) since the last scan: it holds no memory now.
                continue
        return total

    def read(self) -> MemoryReading:
        with self._lock:
            vm = psutil.virtual_memory()
            total, available = int(vm.total), int(vm.available)
            source: Source = "machine"
            cg = self.cgroup()
            if cg is not None and cg.available < available:
                total, available, source = cg.limit, cg.available, "cgroup"
            return MemoryReading(
                total=total, available=available, daemon_rss=self.tree_rss(), source=source
            )


# --- the scripted source -------------------------------------------------------------------


class ScriptedSource:
    """Figures set by hand: tests and benchmarks drive the governor with it.

    `set` changes the figures and records when (on `clock`, which should be the governor's);
    `fail` makes the next reads raise, to check that the governor survives a failed reading.
    """

    def __init__(
        self,
        total: int = 16 * GiB,
        available: int | None = None,
        daemon_rss: int = 200 * MiB,
        source: Source = "machine",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._reading = MemoryReading(
            total=total,
            available=total // 2 if available is None else available,
            daemon_rss=daemon_rss,
            source=source,
            changed_at=clock(),
        )
        self._error: Exception | None = None
        self.reads = 0

    @property
    def reading(self) -> MemoryReading:
        return self._reading

    def set(
        self,
        *,
        total: int | None = None,
        available: int | None = None,
        used_fraction: float | None = None,
        daemon_rss: int | None = None,
        source: Source | None = None,
    ) -> MemoryReading:
        """Change some figures; `used_fraction` sets `available` from the (new) total."""
        r = self._reading
        total = r.total if total is None else total
        if used_fraction is not None:
            available = round(total * (1.0 - used_fraction))
        r = replace(
            r,
            total=total,
            available=r.available if available is None else available,
            daemon_rss=r.daemon_rss if daemon_rss is None else daemon_rss,
            source=r.source if source is None else source,
            changed_at=self._clock(),
        )
        # One reference assignment: a reader in another thread sees the old or the new figures.
        self._reading = r
        return r

    def fail(self, error: Exception | None) -> None:
        """Make reads raise `error` (None: read normally again)."""
        self._error = error

    def read(self) -> MemoryReading:
        self.reads += 1
        if self._error is not None:
            raise self._error
        return self._reading


def default_source() -> MemorySource:
    """The source the daemon uses: psutil on this process and its descendants."""
    return PsutilSource(os.getpid())
