"""Running the simulator: a bound socket, a uvicorn server, `tierd simulate` in the foreground,
and `SimulatorThread` in a background thread for tests, the demo and the benchmark.

What it serves, and how, is in the modules beside this one (see `__init__.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from daemon.tools.simulator.app import Simulator, create_sim_app
from daemon.tools.simulator.scenario import Scenario, load_scenario

__all__ = ["SimulatorThread", "run_simulator_cli", "serve_simulator"]


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP, not 0: asyncio only turns Nagle off (TCP_NODELAY) for sockets that
    # say they are TCP, and with Nagle on every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # A daemon at a ceiling of 1,000 opens hundreds of connections at once: a short backlog
    # drops their SYNs and the clients wait a second (or fail) before trying again.
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _server(app: FastAPI, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        access_log=False,
        # Idle connections outlive the client's own keep-alive (litellm's aiohttp pool: 120 s),
        # so the client is always the one to close them. With uvicorn's 5 s, a connection the
        # server closes just as the client reuses it fails the call: under load, hundreds did.
        timeout_keep_alive=300,
        # Injected timeouts hang on purpose: do not wait for them at exit.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    app.state.sim.server = server
    return server


async def serve_simulator(
    scenario: Scenario | dict[str, Any] | str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8740,
    *,
    scale: float | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the simulator until cancelled or signalled."""
    sock = _bind(host, port)
    server = _server(create_sim_app(scenario, scale=scale), log_level)
    await server.serve(sockets=[sock])


def run_simulator_cli(
    port: int, scenario_path: str | Path | None, host: str = "127.0.0.1", scale: float = 1.0
) -> None:
    """`tierd simulate`: serve in the foreground until Ctrl-C."""
    scenario = load_scenario(scenario_path)
    sock = _bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    print(
        f"tierd simulator: scenario '{scenario.name}', latency scale {scale}, "
        f"OpenAI-compatible API at http://{shown_host}:{sock.getsockname()[1]}/v1",
        flush=True,
    )
    server = _server(create_sim_app(scenario, scale=scale), "warning")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(sockets=[sock]))


class SimulatorThread:
    """The simulator served from a background thread on a free loopback port.

    For tests, the demo and the benchmark: `with SimulatorThread(scenario) as sim: sim.url`.
    The thread has its own event loop, so it keeps answering while the caller's loop (or a
    blocking test) does something else.
    """

    def __init__(
        self,
        scenario: Scenario | dict[str, Any] | str | Path | None = None,
        *,
        scale: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = create_sim_app(scenario, scale=scale)
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = _server(self.app, "warning")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root, e.g. http://127.0.0.1:PORT (the OpenAI API is under /v1)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def sim(self) -> Simulator:
        return self.app.state.sim

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"tierd-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
