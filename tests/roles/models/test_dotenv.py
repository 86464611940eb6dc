"""litellm never loads a `.env` file into the daemon's environment.

In its default mode litellm, when imported, loads the first `.env` found from its install
directory (or, for a program without a file, the working directory) upward: a user's project
or home directory may hold one with keys, proxies or base URLs meant for something else.
`roles.models.client` imports litellm in production mode, which reads no file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import ROOT

PROBE = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
from roles.models.client import litellm
print(json.dumps({{k: os.environ.get(k) for k in ("TIERD_PLANTED", "HTTPS_PROXY")}}))
"""


def test_a_dotenv_file_where_litellm_looks_is_not_loaded(tmp_path: Path) -> None:
    # Without a script file, python-dotenv starts its search in the working directory.
    (tmp_path / ".env").write_text("TIERD_PLANTED=from-dotenv\nHTTPS_PROXY=http://10.9.9.9:1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TIERD_PLANTED", "HTTPS_PROXY")}
    env["LITELLM_MODE"] = "DEV"  # litellm's default; the client must override it
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"TIERD_PLANTED": None, "HTTPS_PROXY": None}
