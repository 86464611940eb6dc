"""The agent card at /.well-known/agent-card.json: what tierd does and how to reach it.

Built per request from the URL the client used (the guard has checked its Host is loopback),
because the daemon's port is known only once it is bound (port 0 picks one). Served with the
caching headers A2A 1.0 (section 8.6) asks for: Cache-Control with max-age, an ETag from the
card's content (a matching If-None-Match gets 304), and Last-Modified.
"""

from __future__ import annotations

import hashlib
import json
import time
from email.utils import formatdate

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon import __version__

#: Seconds a client may keep the card: short, since a restart may bind another port.
CARD_MAX_AGE_S = 60
#: The card's content changes only with the process (its version, its port).
_STARTED = formatdate(time.time(), usegmt=True)

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
RPC_PATH = "/a2a"
SCHEME = "bearer"

SKILLS = [
    AgentSkill(
        id="team-task",
        name="Run a task with a team of agents",
        description=(
            "Plans the work into parallel streams, runs them on cheap executor models, "
            "reviews every output with a premium orchestrator and merges one result with a "
            "report (tokens, dollars, time). Asks when it needs answers (input-required); "
            "with approval required, waits for an approval of the merged result."
        ),
        tags=["planning", "parallel", "writing", "research", "orchestration"],
        examples=["Prepare the follow-up for this inbound lead", "Draft a market note on X"],
        input_modes=["text/plain", "application/json"],
        output_modes=["text/markdown"],
    ),
    AgentSkill(
        id="code-task",
        name="Change a git repository",
        description=(
            'With metadata {"tierd": {"repo": "/abs/path", "base": "main"}}: works '
            "in worktrees of its own (never the user's tree), tests in a sandbox, merges the "
            "accepted branches; the diff comes as an artifact and an approval applies it."
        ),
        tags=["code", "git", "refactoring", "tests"],
        examples=["Add drag-and-drop to the sidebar"],
        input_modes=["text/plain", "application/json"],
        output_modes=["text/markdown", "text/x-diff"],
    ),
]


def agent_card(base_url: str) -> AgentCard:
    """The card for a daemon reached at `base_url` (scheme://host:port, no path)."""
    return AgentCard(
        name="tierd",
        description=(
            "A local daemon that runs hierarchical teams of AI agents: a premium planner and "
            "orchestrator, cheap executors working in parallel, one reviewed result."
        ),
        version=__version__,
        provider=AgentProvider(organization="tierd", url=base_url),
        supported_interfaces=[
            AgentInterface(
                url=base_url + RPC_PATH,
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_1_0,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={
            SCHEME: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="the token in the daemon's daemon.json (field token)",
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={SCHEME: StringList(list=[])})],
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/markdown"],
        skills=SKILLS,
    )


async def _card(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    body = json.dumps(agent_card_to_dict(agent_card(base)), separators=(",", ":"))
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {
        "Cache-Control": f"max-age={CARD_MAX_AGE_S}",
        "ETag": etag,
        "Last-Modified": _STARTED,
    }
    asked = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in asked or "*" in asked:
        return Response(status_code=304, headers=headers)
    return JSONResponse(json.loads(body), headers=headers)


def card_route() -> Route:
    return Route(CARD_PATH, endpoint=_card, methods=["GET"])
