"""The work consumers of the executor pools the relay publishes to, made once per pool;
and a limited definition's queues and slots (workers/limit_subjects.py), made the first
time its work is published and set again when a submit's work brings another limit.

A pool's work waits in TASK_WORK whether or not its consumers exist (a WorkQueue stream
keeps what no consumer is interested in, and a consumer made later takes it all), so
this is not needed for the work to run. It is for the backlog: work for a pool no worker
has joined yet shows as pending (workers/bridge/backlog.py) from its first item on. A
limited definition's slots are needed, though: made before its first work is published.
One set lookup per message; JetStream requests only the first time a pool (or a limited
definition, or its new limit) is met in this process.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.js import JetStreamContext

from domain.executor_pool import DEFAULT_POOL
from workers.limit_subjects import ensure_limit
from workers.protocol import Outgoing, WorkLimit
from workers.streams import WORK_ACK_WAIT_S, WORK_MAX_DELIVER, ensure_pool_consumers


class PoolConsumers:
    """Makes the work consumers of each pool the first time a batch holds its work."""

    def __init__(self, js: JetStreamContext, work_ack_wait_s: float = WORK_ACK_WAIT_S) -> None:
        self._js = js
        self._ack_wait_s = work_ack_wait_s
        self._known: set[str | None] = {None, DEFAULT_POOL}  # the default's: ensure_streams
        self._limits: dict[tuple[str, str], int] = {}  # (pool, definition) -> limit set

    async def ensure(self, messages: Sequence[Outgoing]) -> None:
        """The consumers of every pool in ``messages`` not met before, and the queues and
        slots of every limited definition (raises on a NATS error: the batch is published
        again, and its pools looked at again)."""
        known = self._known
        new = {message.pool for message in messages if message.pool not in known}
        if new:
            pools = sorted(pool for pool in new if pool is not None)
            await ensure_pool_consumers(self._js, pools, self._ack_wait_s)
            known.update(pools)
        for message in messages:
            if message.limit is not None and self._changes(message.limit):
                await self._apply(message.limit)

    def _changes(self, limit: WorkLimit) -> bool:
        """Not met before, or a submit's work with another limit than the one set."""
        applied = self._limits.get((limit.pool, limit.definition_id))
        return applied is None or (limit.current and applied != limit.max_concurrency)

    async def _apply(self, limit: WorkLimit) -> None:
        self._limits[limit.pool, limit.definition_id] = await ensure_limit(
            self._js,
            limit.pool,
            limit.definition_id,
            limit.max_concurrency,
            self._ack_wait_s,
            WORK_MAX_DELIVER,
            current=limit.current,
        )
