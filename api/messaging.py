"""Connecting to NATS: one code path for ``serve``, ``worker`` and the cluster tests.

A NATS URL setting may name several servers (comma-separated, the NATS convention);
nats-py's ``connect`` refuses that string and takes a list, so it is split here.
nats-py's own callbacks would log an error with a traceback at every reconnect attempt
of an outage; here an outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging

import nats
import nats.errors
from nats.aio.client import Client

from api.settings import parse_nats_servers
from workers.stream_state import StreamState, describe

log = logging.getLogger(__name__)
_CONNECTION_LOST = (
    OSError,
    TimeoutError,
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
)


async def connect_nats(url: str, name: str) -> Client:
    """Connect to any of the servers in ``url``; reconnect (to any of them) forever."""
    servers = list(parse_nats_servers(url))
    state = StreamState(f"NATS ({name})", log)
    client: Client | None = None

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, _CONNECTION_LOST) or client is None or not client.is_connected:
            state.failed(exc)  # the connection went, or a reconnect failed: once an outage
        else:
            log.warning("NATS (%s): %s", name, describe(exc))  # a slow consumer, say

    async def on_disconnected() -> None:
        if client is not None and (client.is_closed or client.is_draining):
            return  # our own shutdown, not an outage
        state.failed("disconnected")

    async def on_reconnected() -> None:
        state.ok()

    client = await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return client
