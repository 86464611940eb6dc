"""Helpers for the A2A tests: the daemon and its simulator, the a2a-sdk client on it, and
messages to send it."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from a2a.client import Client, ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
)
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct
from support.daemon import DaemonProcess
from support.plans import stream
from support.simulator import use_scenario

FAST = {"planner": 0.05, "orchestrator": 0.05, "executor": 0.1}
TWO = {"latency": FAST, "plan": {"streams": [stream("a"), stream("b")]}}
Q_A = "Which region should part a cover?"
#: Stream a asks Q_A: the task waits for an answer (A2A input-required).
QUESTION = {
    "latency": FAST,
    "plan": {"streams": [stream("a"), stream("b")]},
    "streams": {"a": {"reply": "question", "question": Q_A}},
}


class Env:
    """The daemon and its simulator; `restart` stops the daemon and starts it on the same home."""

    def __init__(self, d: DaemonProcess, sim: Any) -> None:
        self.d, self.sim = d, sim

    def use(self, scenario: dict[str, Any]) -> None:
        use_scenario(self.sim, scenario)

    def restart(self) -> DaemonProcess:
        self.d.stop(signal.SIGTERM)
        self.d = DaemonProcess(self.d.home).start()
        return self.d


@asynccontextmanager
async def a2a_client(
    d: DaemonProcess, *, streaming: bool = False, token: str | None = None
) -> AsyncIterator[Client]:
    """The a2a-sdk client on the daemon, found through its agent card."""
    headers = {"Authorization": f"Bearer {token or d.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=180.0) as http:
        config = ClientConfig(streaming=streaming, httpx_client=http)
        client = await create_client(d.url, client_config=config)
        try:
            yield client
        finally:
            await client.close()


def request(
    text: str,
    *,
    task_id: str = "",
    context_id: str = "",
    references: list[str] | None = None,
    message_id: str = "",
    metadata: dict[str, Any] | None = None,
    immediately: bool = False,
    history_length: int | None = None,
) -> SendMessageRequest:
    message = Message(
        message_id=message_id or str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
        reference_task_ids=references or [],
    )
    configuration = SendMessageConfiguration(return_immediately=immediately)
    if history_length is not None:
        configuration.history_length = history_length
    sent = SendMessageRequest(message=message, configuration=configuration)
    if metadata:
        sent.metadata.CopyFrom(ParseDict(metadata, Struct()))
    return sent


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]
