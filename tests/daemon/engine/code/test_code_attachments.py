"""A code stream's coder gets its stream's attachments, as a text executor does: on a real
daemon, a real repository and the simulator, which counts the images each call carries."""

from __future__ import annotations

import base64
from pathlib import Path

from support.code_plans import adds_half
from support.daemon import DaemonProcess, wait_ended, write_config
from support.simulator import calls, running_simulator

from daemon.service.attachments.pdf import encode_png

FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.05}


def test_a_coder_sees_its_streams_image(tmp_path: Path, user_repo: Path, bwrap: str) -> None:
    scenario = adds_half(FAST)
    scenario["plan"]["streams"][0]["attachments"] = ["mockup.png"]
    picture = encode_png(4, 3, 12, bytes(range(36)))
    attachment = {
        "name": "mockup.png",
        "media_type": "image/png",
        "data": base64.b64encode(picture).decode(),
    }
    home = tmp_path / "home"
    home.mkdir()
    with running_simulator(scenario) as sim:
        write_config(home, sim.url)
        d = DaemonProcess(home).start()
        try:
            params = {"goal": "Add half()", "repo": str(user_repo), "attachments": [attachment]}
            task_id = d.rpc("task/submit", params)["result"]["task_id"]
            task = wait_ended(d, task_id, timeout=120)
        finally:
            d.stop()
        coder = calls(sim.url, purpose="execute")
    assert task["state"] == "completed", task.get("error")
    assert task["plan"]["streams"][0]["attachment_delivery"] == {"mockup.png": "images"}
    # gpt-5-mini sees images (litellm says so): each of the coder's steps carries the picture.
    assert len(coder) == 2 and [c["images"] for c in coder] == [1, 1], coder
