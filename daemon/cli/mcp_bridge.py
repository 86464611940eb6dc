"""`tierd mcp`: MCP over stdio, relayed to the running daemon's /mcp.

For MCP clients that only launch local processes. It finds the daemon through daemon.json
(checked as every command checks it: `/healthz` must echo the instance id before the token is
sent), starts none, and exits 3 with a clear message on stderr when no daemon answers. Then
it relays JSON-RPC messages both ways, unchanged: lines on stdin go to the daemon's streamable
HTTP endpoint, and what the daemon sends (responses, progress, its own requests such as
elicitation) goes to stdout. The MCP SDK's two transports do the framing on each side, so
the bridge knows almost nothing of the protocol's methods and needs no change when they grow.

The one thing it adds: on the 2026-07-28 wire, streamable HTTP repeats a request's protocol
version, method and name (tool, prompt, resource, task) in headers, which the server checks
against the body. A client session sets them for the requests it makes; the bridge relays
requests it did not make, so it sets them from each message's own envelope. So both wires pass
through: the 2025-11-25 one (elicitation as requests from the daemon) and the 2026-07-28 one
(elicitation inside results; the tasks extension's tasks/get, tasks/update, tasks/cancel).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: Exit status when the daemon goes away mid-session (3 is "no daemon" at start).
LOST = 1
#: The param a request names its object by, repeated in `Mcp-Name` on the 2026-07-28 wire:
#: the SDK's own table (tools/call, prompts/get, resources/read) and the tasks extension's.
TASK_NAMED = {"tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}


def cmd_mcp(args: argparse.Namespace) -> int:
    """Relay stdio to the daemon's MCP endpoint until stdin closes. DaemonNotRunning (the
    CLI's exit 3) when no daemon answers for this home."""
    from daemon.cli.client import Client

    with Client.discover() as found:
        url, token = found.url, found.token
    # Imported only now: every other command starts without the MCP SDK.
    import anyio

    return anyio.run(relay, f"{url}/mcp", token)


async def relay(endpoint: str, token: str) -> int:
    """Pump messages between this process's stdio and `endpoint` until either side ends."""
    import anyio
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    lost = False
    # A long read timeout: the daemon's event stream for server requests may idle for long.
    timeout = httpx2.Timeout(30.0, read=3600.0)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    async with (
        http,
        streamable_http_client(endpoint, http_client=http) as (remote_in, remote_out),
        stdio_server() as (local_in, local_out),
        anyio.create_task_group() as group,
    ):

        async def upstream() -> None:
            await _pump(local_in, remote_out, "client", with_routing_headers)
            group.cancel_scope.cancel()  # stdin closed: the client is done

        async def downstream() -> None:
            nonlocal lost
            await _pump(remote_in, local_out, "daemon")
            lost = True
            group.cancel_scope.cancel()

        group.start_soon(upstream)
        group.start_soon(downstream)
    if lost:
        print(f"tierd mcp: the daemon at {endpoint} closed the connection", file=sys.stderr)
    return LOST if lost else 0


async def _pump(source: Any, sink: Any, side: str, adapt: Any = None) -> None:
    """Forward every message; an error one transport reports is said on stderr, not sent.

    Both ends are closed when the pump ends (or is cancelled): a transport's writer ends only
    when its stream closes, and the bridge exits only once both transports have ended.
    """
    async with source, sink:
        async for message in source:
            if isinstance(message, Exception):
                print(f"tierd mcp: {side} side: {message}", file=sys.stderr)
                continue
            await sink.send(message if adapt is None else adapt(message))


def with_routing_headers(message: Any) -> Any:
    """A client's 2026-07-28 request (or notification) with the headers the HTTP wire repeats
    from its body; anything else (the 2025-11-25 wire, responses) unchanged."""
    from mcp.shared.inbound import (
        MCP_METHOD_HEADER,
        MCP_NAME_HEADER,
        MCP_PROTOCOL_VERSION_HEADER,
        NAME_BEARING_METHODS,
        encode_header_value,
    )
    from mcp.shared.message import ClientMessageMetadata, SessionMessage
    from mcp_types import PROTOCOL_VERSION_META_KEY
    from mcp_types.jsonrpc import JSONRPCNotification, JSONRPCRequest

    root = message.message
    if not isinstance(root, JSONRPCRequest | JSONRPCNotification):
        return message
    params = root.params or {}
    meta = params.get("_meta")
    version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
    if not isinstance(version, str):
        return message
    headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: root.method}
    key = NAME_BEARING_METHODS.get(root.method) or TASK_NAMED.get(root.method)
    name = params.get(key) if key else None
    if isinstance(name, str):
        headers[MCP_NAME_HEADER] = encode_header_value(name)
    return SessionMessage(root, ClientMessageMetadata(headers=headers))


def main() -> int:
    """`python -m daemon.cli.mcp_bridge`: the same as `tierd mcp`, with its exit codes."""
    from daemon.cli.client import DaemonNotRunning
    from daemon.cli.output import EXIT_NO_DAEMON, err

    try:
        return cmd_mcp(argparse.Namespace())
    except DaemonNotRunning as exc:
        err(str(exc))
        return EXIT_NO_DAEMON
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
