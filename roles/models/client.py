"""litellm, set up for a local daemon: import it from here, never directly.

litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is imported, so the variable is set first:
a daemon offline must not fetch the price map from the network. No debug banners, and no
usage pings to litellm's servers.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

litellm.suppress_debug_info = True
litellm.telemetry = False

__all__ = ["litellm"]
