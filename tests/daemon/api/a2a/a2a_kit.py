"""Helpers for the A2A tests: the a2a-sdk client on a daemon, and messages to send it."""

from __future__ import annotations

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


@asynccontextmanager
async def a2a_client(
    d: DaemonProcess, *, streaming: bool = False, token: str | None = None
) -> AsyncIterator[Client]:
    """The a2a-sdk client on the daemon, found through its agent card."""
    headers = {"Authorization": f"Bearer {token or d.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=60.0) as http:
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
    metadata: dict[str, Any] | None = None,
    immediately: bool = False,
) -> SendMessageRequest:
    message = Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
    )
    sent = SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(return_immediately=immediately)
    )
    if metadata:
        sent.metadata.CopyFrom(ParseDict(metadata, Struct()))
    return sent


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]
