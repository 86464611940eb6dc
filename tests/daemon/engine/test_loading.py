"""The engine's loader: the import runs with the garbage collector paused, and the collector
comes back however the import ends."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

import pytest

from daemon.engine import loading
from daemon.engine.checkpoints import Checkpoints
from daemon.engine.loading import WorkflowLoader, collector_paused


def test_the_collector_is_paused_for_the_block_and_back_after_it_however_it_ends() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("an import that fails")
    assert gc.isenabled()
    gc.disable()
    try:  # off before: left off
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Opened:
    async def open(self, checkpoints: Checkpoints) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("fails", [False, True])
def test_the_engine_import_runs_with_the_collector_off(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    seen: list[bool] = []

    def import_module(name: str) -> Any:
        seen.append(gc.isenabled())
        if fails:
            raise ImportError(f"no module {name}")
        return object()

    monkeypatch.setattr(loading.importlib, "import_module", import_module)
    # The stand-in workflow ignores the checkpoints it is opened on.
    loader = WorkflowLoader(lambda module: cast(Any, _Opened()), cast(Any, None))

    async def main() -> None:
        if fails:
            with pytest.raises(ImportError):
                await loader.get()
        else:
            assert await loader.get() is not None

    asyncio.run(main())
    assert seen == [False]  # the import ran once, with the collector off
    assert gc.isenabled()  # and it is back, whether the import failed or not
