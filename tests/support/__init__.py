"""Test support: the daemon and the simulator as real processes, and the constants tests share.

`tests/` is on sys.path (pytest puts the rootdir conftest's directory there), so a test imports
`from support.daemon import DaemonProcess`.
"""

from pathlib import Path

#: The repository's root: the working directory of every subprocess a test starts.
ROOT = Path(__file__).resolve().parents[2]
#: Models from litellm's price table, served by the simulator through api_base.
PREMIUM = "openai/gpt-5"
CHEAP = "openai/gpt-5-mini"
#: The env var tests put a (meaningless) simulator key in.
KEY_ENV = "TIERD_SIM_KEY"
