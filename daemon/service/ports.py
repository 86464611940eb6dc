"""What the service needs from the runner, as a protocol: the service never imports the engine.

The daemon's composition root hands the runner in; tests can hand in anything that fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Engine(Protocol):
    """Starts, cancels and wakes task workflows, and owns the agent limit."""

    def start(self, task_id: str) -> None: ...
    async def cancel(self, task_id: str) -> None: ...
    def wake(self, task_id: str) -> None: ...
    def concurrency(self) -> dict[str, Any]: ...
    def set_ceiling(self, ceiling: int) -> None: ...
    def model_prices(
        self, models: Mapping[str, str]
    ) -> dict[str, tuple[float, float] | None] | None: ...
    async def check_models(
        self, stored: Mapping[str, Any], *, wait: bool = False
    ) -> list[str] | None: ...
