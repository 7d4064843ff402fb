"""The work consumers of the executor pools the relay publishes to, made once per pool.

A pool's work waits in TASK_WORK whether or not its consumers exist (a WorkQueue stream
keeps what no consumer is interested in, and a consumer made later takes it all), so
this is not needed for the work to run. It is for the backlog: work for a pool no worker
has joined yet shows as pending (workers/bridge/backlog.py) from its first item on.
One set lookup per message; a JetStream request per priority only the first time a pool
is met in this process.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.js import JetStreamContext

from domain.executor_pool import DEFAULT_POOL
from workers.protocol import Outgoing
from workers.streams import WORK_ACK_WAIT_S, ensure_pool_consumers


class PoolConsumers:
    """Makes the work consumers of each pool the first time a batch holds its work."""

    def __init__(self, js: JetStreamContext, work_ack_wait_s: float = WORK_ACK_WAIT_S) -> None:
        self._js = js
        self._ack_wait_s = work_ack_wait_s
        self._known: set[str | None] = {None, DEFAULT_POOL}  # the default's: ensure_streams

    async def ensure(self, messages: Sequence[Outgoing]) -> None:
        """The consumers of every pool in ``messages`` not met before (raises on a NATS
        error: the batch is published again, and its pools looked at again)."""
        known = self._known
        new = {message.pool for message in messages if message.pool not in known}
        if not new:
            return
        pools = sorted(pool for pool in new if pool is not None)
        await ensure_pool_consumers(self._js, pools, self._ack_wait_s)
        known.update(pools)
