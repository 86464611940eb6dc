"""`python -m daemon.tools.soak --minutes 10`: a steady load for a while, then a verdict on leaks.

Starts the model simulator in a thread of this process and a real daemon (`tierd serve`, its
own temporary TIERD_HOME, the same start-up as `tierd demo`), warms it up, and samples its
`daemon/status` process figures (resident memory, open fds, threads, asyncio tasks) every
`--sample-s` seconds while a steady load runs: tasks submitted at up to `--rate` a second (some
cancelled soon after), event-stream followers connecting and disconnecting, and a reader
getting recent tasks about ten times a second (listing them now and then), with the mix of
reads and submits fixed (`READS_PER_TASK`; a slow machine slows the submits). Each sample also
records how many requests the daemon had answered. Then it lets the daemon go idle and judges
(`leaks.py`):

- memory: after the warm-up, the least-squares slope of RSS against requests answered, in
  bytes kept per request, is below `LEAK_BYTES_PER_REQUEST`: a leak grows in step with the
  work, a healthy daemon's noise does not;
- fds, threads and asyncio tasks: once idle again, back to the idle figures measured after
  the warm-up (within a small slack for pools that size themselves lazily).

Prints a table of the samples and the verdict; exits 1 on a leak, 2 if the run itself could
not be done.

How long to run it. CI runs 20 s (`tests/daemon/tools/test_soak.py`, samples every second):
enough to find a leak of 1 MiB/s (over 100 KiB per request) and anything larger; it is
proved to fail with 256 KiB kept per `task/get` (tests/mutation, case leak-task-get). A slow
leak (a few KiB per request, or one tied to rare events such as cancels) hides in the first
minutes' noise: before a release, run
`python -m daemon.tools.soak --minutes 30 --sample-s 5 --json soak.json` on a quiet machine.
Over half an hour at about 8 requests/s (15,000 requests) the slope resolves a kilobyte per
request; the verdict's detail line gives the slope in KiB per request and in MiB/s, and
`soak.json` has every sample for a plot of RSS against `work`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
from rich.console import Console
from rich.table import Table

from daemon.tools.demo import demo_config
from daemon.tools.demo_run import DaemonHandle, start_daemon
from daemon.tools.leaks import Sample, Verdict, judge
from daemon.tools.simulator import SimulatorThread

TERMINAL = {"completed", "failed", "canceled"}
#: Seconds between two `task/get`s of the reader: gets are the bulk of the load's requests,
#: so a leak in any read path shows as RSS growing with the work done.
GET_EVERY_S = 0.1
#: The reader lists the recent tasks once every this many gets.
LIST_EVERY = 5
#: The load's mix, whatever the machine's speed: the submitter waits until the reader has
#: made this many reads for each task submitted so far. A healthy daemon's memory grows a
#: little with each task (caches filling), a read-path leak with each read; with the mix
#: fixed, the bytes per request of a healthy run do not depend on how busy the machine is.
READS_PER_TASK = 4


def _stream(id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"Part {id_}",
        "job": f"Write part {id_}.",
        "output_definition": f"Part {id_} as text.",
        "ownership": [f"{id_}/"],
        "depends_on": [],
        "acceptance_check": "It is there.",
    }


#: Two streams per task with short latencies: each task exercises plan, execute, review and
#: merge in a second or two, so a steady rate keeps a few tasks in flight at all times.
SCENARIO: dict[str, Any] = {
    "name": "soak",
    "seed": 7,
    "latency": {"planner": 0.2, "orchestrator": 0.1, "executor": 0.3},
    "plan": {"streams": [_stream("a"), _stream("b")]},
}


@dataclass
class Counts:
    submitted: int = 0
    busy: int = 0
    canceled: int = 0
    streams: int = 0
    events: int = 0
    reads: int = 0
    #: Every request of the load the daemon answered: the work the RSS slope is taken against.
    requests: int = 0
    errors: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, url: str, token: str, seconds: float, rate: float, sample_s: float) -> None:
        self.url = url
        self.token = token
        self.seconds = seconds
        self.rate = rate
        self.sample_s = sample_s
        self.counts = Counts()
        self.samples: list[Sample] = []
        self.recent: list[str] = []
        self.cancels: list[asyncio.Future[None]] = []
        self.rng = random.Random(11)
        headers = {"Authorization": f"Bearer {token}"}
        # The load's connections, closed before the idle figures are taken (each is an fd in
        # the daemon too); samples go over one connection of their own.
        self.http = httpx.AsyncClient(base_url=url, timeout=60.0, headers=headers)
        self.probe = httpx.AsyncClient(
            base_url=url, timeout=60.0, headers=headers, limits=httpx.Limits(max_connections=1)
        )

    async def rpc(
        self, method: str, params: dict[str, Any] | None = None, *, probe: bool = False
    ) -> dict[str, Any]:
        http = self.probe if probe else self.http
        resp = await http.post(
            "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        )
        if not probe:
            self.counts.requests += 1
        return resp.json()

    async def sample(self) -> Sample:
        doc = await self.rpc("daemon/status", probe=True)
        result = doc["result"]
        proc = result["process"]
        return Sample(
            round(time.monotonic(), 2),
            proc["rss_bytes"],
            proc["open_fds"] or 0,
            proc["threads"],
            proc["asyncio_tasks"] or 0,
            result["limits"]["active_tasks"],
            self.counts.requests,
        )

    async def wait_idle(self, within_s: float) -> Sample:
        """Wait until no task is unfinished and the figures settle; return the idle sample."""
        deadline = time.monotonic() + within_s
        previous: Sample | None = None
        while True:
            current = await self.sample()
            settled = previous is not None and (
                (current.open_fds, current.threads, current.asyncio_tasks)
                == (previous.open_fds, previous.threads, previous.asyncio_tasks)
            )
            if current.active_tasks == 0 and settled:
                return current
            if time.monotonic() > deadline:
                return current
            previous = current
            await asyncio.sleep(1.0)

    async def _submitter(self, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            if self.counts.reads < READS_PER_TASK * self.counts.submitted:
                await asyncio.sleep(0.05)  # the reader is behind: keep the mix
                continue
            n += 1
            doc = await self.rpc("task/submit", {"goal": f"Soak task {n}"})
            if "result" in doc:
                task_id = doc["result"]["task_id"]
                self.counts.submitted += 1
                self.recent = [*self.recent[-19:], task_id]
                if n % 5 == 0:  # some cancelled soon after, mid-work
                    self.cancels.append(asyncio.ensure_future(self._cancel(task_id)))
            elif doc["error"]["code"] == -32005:
                self.counts.busy += 1
            else:
                self.counts.errors.append(f"submit: {doc['error']}")
            await asyncio.sleep(1.0 / self.rate)

    async def _cancel(self, task_id: str) -> None:
        await asyncio.sleep(0.5)
        doc = await self.rpc("task/cancel", {"task_id": task_id})
        if "result" in doc:
            self.counts.canceled += 1
        elif doc["error"]["code"] != -32002:  # it had finished already: fine
            self.counts.errors.append(f"cancel: {doc['error']}")

    async def _follower(self, until: float) -> None:
        """Event streams opened, read for a moment and dropped, one after another."""
        while time.monotonic() < until:
            path = (
                f"/v1/tasks/{self.rng.choice(self.recent)}/events"
                if self.recent and self.rng.random() < 0.7
                else "/v1/events"
            )
            hold = self.rng.uniform(0.5, 3.0)
            try:
                async with self.http.stream("GET", path) as resp:
                    self.counts.requests += 1
                    if resp.status_code == 200:
                        self.counts.streams += 1
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(hold):
                                async for line in resp.aiter_lines():
                                    if line.startswith("id:"):
                                        self.counts.events += 1
                    elif resp.status_code != 429:
                        self.counts.errors.append(f"stream {path}: {resp.status_code}")
            except httpx.HTTPError as exc:
                self.counts.errors.append(f"stream {path}: {exc!r}")
            await asyncio.sleep(self.rng.uniform(0.0, 0.5))

    async def _reader(self, until: float) -> None:
        """Gets of recent tasks at a steady pace, and a list now and then."""
        n = 0
        while time.monotonic() < until:
            n += 1
            if self.recent:
                doc = await self.rpc("task/get", {"task_id": self.rng.choice(self.recent)})
                if "result" not in doc:
                    self.counts.errors.append(f"get: {doc['error']}")
                self.counts.reads += 1
            if n % LIST_EVERY == 0:
                doc = await self.rpc("task/list", {"limit": 20})
                if "result" not in doc:
                    self.counts.errors.append(f"list: {doc['error']}")
                self.counts.reads += 1
            await asyncio.sleep(GET_EVERY_S)

    async def _sampler(self, until: float) -> None:
        while time.monotonic() < until:
            self.samples.append(await self.sample())
            await asyncio.sleep(self.sample_s)

    async def run(self) -> dict[str, Any]:
        try:
            # Warm-up: the first tasks load the engine (litellm, langgraph) and size the
            # lazily created pools; the idle figures after it are the baseline.
            warm = [
                (await self.rpc("task/submit", {"goal": f"Warm-up {i}"}, probe=True))["result"][
                    "task_id"
                ]
                for i in range(3)
            ]
            self.recent = list(warm)
            idle_before = await self.wait_idle(180)
            until = time.monotonic() + self.seconds
            await asyncio.gather(
                self._submitter(until),
                self._follower(until),
                self._follower(until),
                self._reader(until),
                self._sampler(until),
            )
            await asyncio.gather(*self.cancels)
            await self.http.aclose()
            idle_after = await self.wait_idle(120)
            verdict = judge(self.samples, idle_before, idle_after)
            return {"verdict": verdict, "idle_before": idle_before, "idle_after": idle_after}
        finally:
            await self.http.aclose()
            await self.probe.aclose()


def _table(samples: list[Sample]) -> Table:
    table = Table(title="daemon/status process figures under load")
    start = samples[0].t if samples else 0.0
    for col in ("t (s)", "requests", "RSS MiB", "fds", "threads", "asyncio tasks", "active"):
        table.add_column(col, justify="right")
    for s in samples:
        table.add_row(
            f"{s.t - start:.0f}",
            str(s.work),
            f"{s.rss_bytes / 2**20:.1f}",
            str(s.open_fds),
            str(s.threads),
            str(s.asyncio_tasks),
            str(s.active_tasks),
        )
    return table


def run_soak(
    seconds: float,
    rate: float = 2.0,
    sample_s: float = 1.0,
    json_path: str | None = None,
    console: Console | None = None,
) -> int:
    """Run the soak; print the figures and the verdict. 0: no leak, 1: a leak, 2: no run."""
    console = console or Console(stderr=False)
    home = Path(tempfile.mkdtemp(prefix="tierd-soak-"))
    handle: DaemonHandle | None = None
    try:
        with SimulatorThread(SCENARIO) as sim:
            config = demo_config(sim.api_base)
            # A ceiling above the steady load's need: the soak looks for leaks, not queueing.
            (home / "config.toml").write_text(
                config + "\n[concurrency]\nceiling = 10\n", encoding="utf-8"
            )
            handle = start_daemon(home)
            soak = Soak(handle.url, handle.token, seconds, rate, sample_s)
            outcome = asyncio.run(soak.run())
            handle.stop()
            handle = None
    except Exception as exc:
        console.print(f"[red]soak: the run failed: {exc!r}[/red]")
        return 2
    finally:
        if handle is not None:
            handle.stop()
        shutil.rmtree(home, ignore_errors=True)
    verdict: Verdict = outcome["verdict"]
    counts = soak.counts
    console.print(_table(soak.samples))
    console.print(
        f"load: {counts.submitted} tasks submitted ({counts.busy} busy), "
        f"{counts.canceled} canceled, {counts.streams} event streams "
        f"({counts.events} events), {counts.reads} reads; "
        f"{len(counts.errors)} errors"
    )
    for err in counts.errors[:10]:
        console.print(f"  [yellow]{err}[/yellow]")
    verdicts = Table(title="verdict")
    for col in ("check", "ok", "detail"):
        verdicts.add_column(col)
    for c in verdict.checks:
        verdicts.add_row(
            c["name"], "[green]yes[/green]" if c["ok"] else "[red]NO[/red]", c["detail"]
        )
    console.print(verdicts)
    ok = verdict.ok and not counts.errors
    if json_path:
        Path(json_path).write_text(
            json.dumps(
                {
                    "ok": ok,
                    "checks": verdict.checks,
                    "counts": asdict(counts),
                    "samples": [asdict(s) for s in soak.samples],
                    "idle_before": asdict(outcome["idle_before"]),
                    "idle_after": asdict(outcome["idle_after"]),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    console.print("[green]no leak[/green]" if ok else "[red]LEAK or errors: see above[/red]")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.tools.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="length of the load")
    length.add_argument("--seconds", type=float, default=None, help="length, short runs")
    parser.add_argument("--rate", type=float, default=2.0, help="tasks submitted per second")
    parser.add_argument("--sample-s", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--json", dest="json_path", default=None, help="write figures here")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (args.minutes or 10.0) * 60
    return run_soak(seconds, args.rate, args.sample_s, args.json_path)


if __name__ == "__main__":
    sys.exit(main())
