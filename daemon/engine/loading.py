"""Loading the engine: the workflow module imported once, in a thread, and opened.

The import (litellm, langgraph) takes seconds of CPU, during which the API must keep
answering; so it runs in a daemon thread (a stop never waits for it) and every caller awaits
one shared, shielded opening: a task cancelled while the workflow opens must not leave it
half open for the others. A failed opening is reported to everyone who awaited it and tried
again by the next caller.

The cyclic garbage collector is paused for the import: the ~3,000 modules it loads set off
several full collections, each walking every object imported so far (1.3 s of CPU at start
on a 2-core machine; the import took 3.3–3.6 s instead of 3.9–4.9 s without them). Import
makes few cycles to collect; the pause is the whole process's, for those seconds, and the
collector is back once the import ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from daemon.engine.checkpoints import Checkpoints

if TYPE_CHECKING:
    from daemon.engine.workflow import Workflow

__all__ = ["ENGINE_IMPORT_TIMEOUT_S", "WorkflowLoader", "collector_paused"]

#: Longest the engine's import may take before tasks fail with a clear reason (no wait in
#: the daemon is unbounded; a healthy import takes seconds).
ENGINE_IMPORT_TIMEOUT_S = 300.0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, then as it was before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class WorkflowLoader:
    """Imports `daemon.engine.workflow`, builds the workflow with `build(module)` and opens it
    on `checkpoints`; once."""

    def __init__(self, build: Callable[[Any], Workflow], checkpoints: Checkpoints) -> None:
        self._build = build
        self._checkpoints = checkpoints
        self._workflow: Workflow | None = None
        self._opening: asyncio.Future[Workflow] | None = None

    @property
    def loaded(self) -> Workflow | None:
        """The open workflow, or None while it is not (yet) open."""
        return self._workflow

    def begin(self) -> asyncio.Future[Workflow]:
        """Start opening the workflow unless that has begun; the opening."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
            # A failed open is reported to every task that awaits it; nobody may await a
            # preload, so mark the exception seen here.
            self._opening.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._opening

    async def get(self) -> Workflow:
        """The open workflow, opening it first if need be."""
        if self._workflow is not None:
            return self._workflow
        return await asyncio.shield(self.begin())

    async def close(self) -> None:
        """Abandon an import still running (not awaited), close an open workflow."""
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(BaseException):
                await self._opening
        if self._workflow is not None:
            await self._workflow.close()

    async def _open(self) -> Workflow:
        loop = asyncio.get_running_loop()
        imported: asyncio.Future[Any] = loop.create_future()

        def settle(module: Any, error: BaseException | None) -> None:
            if imported.done():
                return
            if error is not None:
                imported.set_exception(error)
            else:
                imported.set_result(module)

        def load() -> None:
            module: Any = None
            error: BaseException | None = None
            try:
                with collector_paused():
                    module = importlib.import_module(f"{__package__}.workflow")
            except BaseException as exc:  # handed to the waiting coroutine
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a stop)
                loop.call_soon_threadsafe(settle, module, error)

        threading.Thread(target=load, name="tierd-engine-import", daemon=True).start()
        try:
            try:
                async with asyncio.timeout(ENGINE_IMPORT_TIMEOUT_S):
                    module = await imported
            except TimeoutError:
                raise RuntimeError(
                    f"loading the engine (litellm, langgraph) took over "
                    f"{ENGINE_IMPORT_TIMEOUT_S:.0f}s; is the machine out of memory or CPU?"
                ) from None
            workflow = self._build(module)
            await workflow.open(self._checkpoints)
        except BaseException:
            self._opening = None
            raise
        self._workflow = workflow
        return workflow
