"""The daemon's side of the Ray driver, without a cluster: a driver that cannot connect."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.engine.code.ray.bridge import RayBridge, RayUnavailable
from daemon.engine.code.ray.settings import RaySettings
from daemon.tools.ray_cluster import ray_env


async def test_a_cluster_that_cannot_be_used_is_a_clear_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    ray_env()
    log = tmp_path / "ray-driver.log"
    bridge = RayBridge(RaySettings(address="bogus://nowhere"), log)
    try:
        with pytest.raises(RayUnavailable) as caught:
            await bridge.request("nodes")
    finally:
        await bridge.stop()
    message = str(caught.value)
    # What to change, and Ray's own words from the driver's log.
    assert "[executors] ray_address" in message and "bogus://nowhere" in message
    assert "Module: bogus does not exist" in message
    assert not bridge.running
