"""Provider settings in the daemon's environment reach only the server they were set for.

With `OPENAI_ORGANIZATION` (and the project, custom headers and base URL variables) set, the
openai client used to send them with every request: to the local server a tier names and to
a keyless fallback on another host. Now a request to a server the config names carries
nothing from the environment; the provider's own endpoint (no api_base) still gets them.
Over real HTTP with the real litellm client, against simulators that record every header.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from support import CHEAP, KEY_ENV

from daemon.tools.simulator.server import SimulatorThread
from roles.models import environment
from roles.models.gateway import ModelTier, call_model
from roles.models.transport import Attempts

FAST = {"latency": {"planner": 0.01, "orchestrator": 0.01, "executor": 0.01}}
KEY = "sk-env-scope-key-0451"
MESSAGES = [{"role": "user", "content": "Do the thing."}]
#: Everything the environment may hold for OpenAI, each with a value a test can spot.
PLANTED = {
    "OPENAI_ORGANIZATION": "org-planted-organization",
    "OPENAI_ORG_ID": "org-planted-org-id",
    "OPENAI_PROJECT": "proj-planted-project",
    "OPENAI_PROJECT_ID": "proj-planted-project-id",
    "OPENAI_CUSTOM_HEADERS": "X-Planted-Header: planted-header-value",
}
#: Header names that would carry any of PLANTED.
LEAKY = {"openai-organization", "openai-project", "x-planted-header"}


class HeaderRecorder:
    """ASGI middleware in front of a simulator: records the headers of every model call."""

    def __init__(self, app: Any, seen: list[dict[str, str]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.seen.append(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        await self.app(scope, receive, send)


def recording(scenario: dict[str, Any]) -> tuple[SimulatorThread, list[dict[str, str]]]:
    sim = SimulatorThread(scenario)
    seen: list[dict[str, str]] = []
    sim.app.add_middleware(HeaderRecorder, seen=seen)
    return sim, seen


def leaks(seen: list[dict[str, str]]) -> list[str]:
    """Every planted value, or header that carries one, found in recorded requests."""
    found = []
    for headers in seen:
        found += [name for name in headers if name in LEAKY]
        found += [value for value in PLANTED.values() if value in str(headers)]
    return found


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, KEY)
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    yield
    environment._taken.clear()  # what this test planted goes with it


async def test_a_failing_primary_and_its_fallback_elsewhere_get_nothing_from_the_environment(
    planted: None,
) -> None:
    primary, at_primary = recording({**FAST, "fail_models": [CHEAP]})
    fallback, at_fallback = recording(FAST)
    with primary, fallback:
        tier = ModelTier(
            model=CHEAP,
            api_base=primary.api_base,
            api_key_env=KEY_ENV,
            max_retries=0,
            fallbacks=[f"{CHEAP}@{fallback.api_base}"],
        )
        result = await call_model(tier, MESSAGES, role="executor", purpose="execute", task_id="t")
    assert result.text and result.record.model == CHEAP
    assert len(at_primary) == 1 and len(at_fallback) == 1  # not vacuous: both were asked
    assert leaks(at_primary) == [] and leaks(at_fallback) == []
    # The key went to the tier's own server only.
    assert at_primary[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(at_fallback)
    # Out of every client's reach from now on.
    assert not set(PLANTED) & set(os.environ)


async def test_the_providers_own_endpoint_gets_them_and_at_the_base_url_the_environment_names(
    planted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No api_base in the config: the request is the provider's own, so its organisation,
    project and headers go with it, to the base URL the environment gives (here a simulator
    standing in for OpenAI)."""
    provider, at_provider = recording(FAST)
    with provider:
        monkeypatch.setenv("OPENAI_BASE_URL", provider.api_base)
        tier = ModelTier(model=CHEAP, api_key_env=KEY_ENV, max_retries=0)
        await call_model(tier, MESSAGES, role="executor", purpose="execute", task_id="t")
    (headers,) = at_provider
    assert headers["openai-organization"] == PLANTED["OPENAI_ORGANIZATION"]
    assert headers["openai-project"] == PLANTED["OPENAI_PROJECT"]
    assert headers["x-planted-header"] == "planted-header-value"
    assert headers["authorization"] == f"Bearer {KEY}"


def test_a_tiers_key_never_goes_to_a_fallback_of_another_provider(planted: None) -> None:
    """Without api_base each provider has its own server: the OpenAI tier's key must not be
    sent to Anthropic (litellm then reads Anthropic's own key, for Anthropic)."""
    tier = ModelTier(
        model="openai/gpt-5", api_key_env=KEY_ENV, fallbacks=["anthropic/claude-sonnet-4-5"]
    )
    c = Attempts(tier, "planner", "plan", "t", None, 0, None, {})
    (openai, _), (anthropic, _) = tier.endpoints()
    own = c.request(openai, None, KEY, MESSAGES, None)
    other = c.request(anthropic, None, KEY, MESSAGES, None)
    assert own["api_key"] == KEY and own["organization"] == PLANTED["OPENAI_ORGANIZATION"]
    assert "api_key" not in other and "organization" not in other
    assert "OpenAI-Project" not in other["extra_headers"]
