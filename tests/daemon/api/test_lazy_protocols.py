"""MCP and A2A load on first use: the app imports neither SDK, and the first requests build
each endpoint once. (That they then work is what tests/daemon/api/mcp and a2a check, on a
real daemon whose first MCP or A2A request is the one that loads it.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from types import ModuleType, SimpleNamespace
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from support import ROOT

from daemon.api.lazy_protocols import A2A_PATHS, MCP_PATHS, LazyEndpoint, LazyProtocols

BUILD_THE_APP = """
import sys
from types import SimpleNamespace
from daemon.api.app import fastapi_app
app = fastapi_app(SimpleNamespace(service=None, feed=None))
paths = {getattr(r, "path", None) for r in app.router.routes}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "a2a"))
print(loaded, sorted(p for p in paths if p and ("/mcp" in p or "a2a" in p or "agent" in p)))
"""


def test_building_the_app_imports_neither_sdk_and_mounts_their_paths() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_THE_APP], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr([]) + " " + repr(sorted(MCP_PATHS + A2A_PATHS))


def test_concurrent_first_requests_build_the_endpoint_once() -> None:
    builds: list[str] = []
    answered: list[str] = []

    async def build(module: ModuleType) -> ASGIApp:
        builds.append(module.__name__)
        await asyncio.sleep(0.05)  # the other requests arrive while this one builds

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            answered.append(scope["path"])

        return app

    async def main() -> None:
        lazy = LazyEndpoint("json", build)
        assert not lazy.loaded
        scopes: list[Any] = [{"type": "http", "path": f"/r{i}"} for i in range(8)]
        await asyncio.gather(*(lazy(s, _never, _never) for s in scopes))
        assert lazy.loaded

    asyncio.run(main())
    assert builds == ["json"]
    assert sorted(answered) == [f"/r{i}" for i in range(8)]


def test_a_build_that_fails_is_a_503_and_the_next_request_tries_again() -> None:
    attempts: list[int] = []

    async def build(module: ModuleType) -> ASGIApp:
        attempts.append(1)
        raise RuntimeError("no such SDK")

    async def main() -> list[dict[str, Any]]:
        lazy = LazyEndpoint("json", build)
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(message)

        for _ in range(2):
            await lazy({"type": "http", "path": "/mcp", "headers": []}, _never, send)
        assert not lazy.loaded
        return sent

    sent = asyncio.run(main())
    assert len(attempts) == 2
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [503, 503]
    body = json.loads(next(m for m in sent if m["type"] == "http.response.body")["body"])
    assert body["error"]["code"] == -32603 and "no such SDK" in body["error"]["message"]


def test_after_close_mcp_is_not_loaded_any_more() -> None:
    async def main() -> str:
        protocols = LazyProtocols(SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
        await protocols.close()
        try:
            await protocols.mcp.app()
        except RuntimeError as exc:
            return str(exc)
        return "loaded"

    assert asyncio.run(main()) == "the daemon is stopping"


async def _never(*_: Any) -> Any:
    raise AssertionError("the test's app neither receives nor sends")
