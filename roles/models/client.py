"""litellm, set up for a local daemon: import it from here, never directly.

litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is imported, so the variable is set first:
a daemon offline must not fetch the price map from the network. No debug banners (litellm's
"LLM Provider NOT provided ... Give Feedback / Get Help" paragraphs), and no usage pings to
litellm's servers. Provider settings in the environment (an organisation, a base URL) are
taken out of the clients' reach (`environment`): each request is given only its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# In its default "DEV" mode litellm loads the first `.env` file found walking up from its own
# install directory (a user's project or home directory, for a venv inside it) into the
# daemon's environment: keys, proxies and base URLs nobody gave tierd. Forced, not defaulted.
os.environ["LITELLM_MODE"] = "PRODUCTION"
# litellm's HTTP pool (aiohttp) allows 500 connections per host and 1,000 in all, read at
# import: a daemon with a ceiling of 1,000 agents on one provider would queue half its calls
# inside litellm. tierd's governor and ceiling bound the calls; the pool should not.
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "10000")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "10000")

import litellm

from roles.models import environment

litellm.suppress_debug_info = True
litellm.telemetry = False
environment.take()

__all__ = ["litellm"]
