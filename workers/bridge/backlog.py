"""What waits in JetStream, read from the durable consumers for ``serve``'s metrics.

- Work, per priority (consumer ``work-<priority>``): ``pending``, the items no worker has
  been given yet (``num_pending``); ``unacked``, those given and not acknowledged
  (``num_ack_pending``: attempts running, retries handed back until they are due, the
  work of a worker that died until its ack wait passes); ``oldest_s``, how long the
  oldest pending item has been in the stream: the first message on the priority's
  subject past the consumer's last delivered sequence (one direct read, as the
  workers' aging check does: workers/queue_probe.py).
- Reports (consumer ``results``): every report not yet recorded, pending or unacked.

A few JetStream API requests per read: for scrapes (every 15 s or so), not per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from workers.protocol import (
    PRIORITIES,
    RESULTS_CONSUMER,
    RESULTS_STREAM,
    WORK_STREAM,
    work_consumer,
    work_subject,
)


@dataclass(frozen=True)
class QueueBacklog:
    """One priority's work queue."""

    pending: int
    unacked: int
    oldest_s: float  # 0 when nothing is pending


@dataclass(frozen=True)
class Backlog:
    work: dict[str, QueueBacklog]  # by priority (lower case, as in the subjects)
    results: int  # reports not yet recorded


async def read_backlog(js: JetStreamContext, timeout_s: float = 1.0) -> Backlog:
    """Every work queue and the results consumer, read concurrently; raises TimeoutError
    (or a NATS error) when JetStream does not answer within ``timeout_s``."""
    queues, results = await asyncio.wait_for(
        asyncio.gather(
            asyncio.gather(*(_queue(js, priority) for priority in PRIORITIES)),
            js.consumer_info(RESULTS_STREAM, RESULTS_CONSUMER),
        ),
        timeout_s,
    )
    return Backlog(
        work=dict(zip(PRIORITIES, queues, strict=True)),
        results=int(results.num_pending or 0) + int(results.num_ack_pending or 0),
    )


async def _queue(js: JetStreamContext, priority: str) -> QueueBacklog:
    info = await js.consumer_info(WORK_STREAM, work_consumer(priority))
    pending = int(info.num_pending or 0)
    unacked = int(info.num_ack_pending or 0)
    if not pending:
        return QueueBacklog(0, unacked, 0.0)
    delivered = info.delivered.stream_seq if info.delivered is not None else 0
    try:
        oldest = await js.get_msg(
            WORK_STREAM, seq=(delivered or 0) + 1, subject=work_subject(priority), next=True
        )
    except NotFoundError:  # taken meanwhile
        return QueueBacklog(pending, unacked, 0.0)
    stored: datetime | None = oldest.time
    age = (datetime.now(UTC) - stored).total_seconds() if stored is not None else 0.0
    return QueueBacklog(pending, unacked, max(0.0, age))
