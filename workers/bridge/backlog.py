"""What waits in JetStream, read from the durable consumers for ``serve``'s metrics.

- Work, per executor pool and priority (consumer ``work-<priority>`` of the default pool,
  ``work-<pool>-<priority>`` of another: workers/protocol.py): ``pending``, the items no
  worker has been given yet (``num_pending``); ``unacked``, those given and not
  acknowledged (``num_ack_pending``: attempts running, retries handed back until they are
  due, the work of a worker that died until its ack wait passes); ``oldest_s``, how long
  the oldest pending item has been in the stream: the first message on the queue's
  subject past the consumer's last delivered sequence (one direct read, as the workers'
  aging check does: workers/queue_probe.py). A pool shows from the relay's first work
  item for it on (workers/bridge/pool_consumers.py), whether or not a worker took it up.
  A limited definition's queues (``limited-<pool>-<token>-<priority>``:
  workers/limit_subjects.py) count with their pool's of the same priority (the sums;
  the oldest of either): its tasks waiting for a slot show as pending.
- Reports (consumer ``results``): every report not yet recorded, pending or unacked.

One listing of the work stream's consumers, a direct read per queue with work pending,
and the results consumer: for scrapes (every 15 s or so), not per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from workers.limit_subjects import limited_queue
from workers.protocol import (
    RESULTS_CONSUMER,
    RESULTS_STREAM,
    WORK_STREAM,
    consumer_queue,
)


@dataclass(frozen=True)
class QueueBacklog:
    """One pool's work queue of one priority."""

    pending: int
    unacked: int
    oldest_s: float  # 0 when nothing is pending


@dataclass(frozen=True)
class Backlog:
    work: dict[tuple[str, str], QueueBacklog]  # by (pool, priority: lower case)
    results: int  # reports not yet recorded


async def read_backlog(js: JetStreamContext, timeout_s: float = 1.0) -> Backlog:
    """Every work queue and the results consumer, read concurrently; raises TimeoutError
    (or a NATS error) when JetStream does not answer within ``timeout_s``."""
    return await asyncio.wait_for(_read(js), timeout_s)


async def _read(js: JetStreamContext) -> Backlog:
    consumers, results = await asyncio.gather(
        _all_consumers(js), js.consumer_info(RESULTS_STREAM, RESULTS_CONSUMER)
    )
    queues = [(queue, info) for info in consumers if (queue := _of(info))]
    backlogs = await asyncio.gather(*(_queue(js, info) for _, info in queues))
    work: dict[tuple[str, str], QueueBacklog] = {}
    for (queue, _), backlog in zip(queues, backlogs, strict=True):
        work[queue] = _sum(work[queue], backlog) if queue in work else backlog
    return Backlog(
        work=work, results=int(results.num_pending or 0) + int(results.num_ack_pending or 0)
    )


def _of(info: ConsumerInfo) -> tuple[str, str] | None:
    """(pool, priority) of a work consumer: a pool's queue, or a limited definition's
    (counted with its pool's queue of the same priority); None for any other."""
    limited = limited_queue(info.config.filter_subject or "")
    return (limited[0], limited[2]) if limited else consumer_queue(info.name)


def _sum(one: QueueBacklog, other: QueueBacklog) -> QueueBacklog:
    return QueueBacklog(
        one.pending + other.pending, one.unacked + other.unacked, max(one.oldest_s, other.oldest_s)
    )


async def _all_consumers(js: JetStreamContext) -> list[ConsumerInfo]:
    """The work stream's consumers, every page of the listing (256 a page)."""
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(WORK_STREAM, offset=len(found) or None)
        found.extend(page)
        if len(page) < 256:
            return found


async def _queue(js: JetStreamContext, info: ConsumerInfo) -> QueueBacklog:
    """One consumer's backlog; its oldest item read on its own subject (its filter)."""
    subject = info.config.filter_subject or ""
    pending = int(info.num_pending or 0)
    unacked = int(info.num_ack_pending or 0)
    if not pending:
        return QueueBacklog(0, unacked, 0.0)
    delivered = info.delivered.stream_seq if info.delivered is not None else 0
    try:
        oldest = await js.get_msg(WORK_STREAM, seq=(delivered or 0) + 1, subject=subject, next=True)
    except NotFoundError:  # taken meanwhile
        return QueueBacklog(pending, unacked, 0.0)
    stored: datetime | None = oldest.time
    age = (datetime.now(UTC) - stored).total_seconds() if stored is not None else 0.0
    return QueueBacklog(pending, unacked, max(0.0, age))
