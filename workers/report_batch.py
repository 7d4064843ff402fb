"""Worker reports to ``tasks.results``, gathered: the reports made in one turn of the
event loop go out as one message.

Under load many attempts end in the same turn; one JetStream message for all of them is
one store, one delivery and one ack on the server and in the results consumer, instead of
one each. Alone (an idle worker) a report goes out in the next turn, on its own, as the
single report object it always was; several go as a JSON array of them
(workers/protocol.py decodes both). A batch is cut at ``MAX_BATCH_BYTES`` so that a few
large outputs never make a message the server refuses.

``send`` returns a future that resolves once JetStream has stored the message holding
that report, and fails as that message fails: the worker acks its work only then.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from workers.protocol import RESULTS_SUBJECT, Report
from workers.streams import headers

MAX_BATCH_BYTES = 256 * 1024
MAX_BATCH_REPORTS = 500
ACK_TIMEOUT_S = 10.0

Publish = Callable[[str, bytes, dict[str, Any]], Awaitable["asyncio.Future[Any]"]]


def batch_msg_id(reports: list[Report]) -> str:
    """De-duplication id of a message: the report's own for one report; for several, a
    digest of theirs (the same reports in the same order, the same id)."""
    if len(reports) == 1:
        return reports[0].msg_id
    digest = hashlib.sha1("\n".join(r.msg_id for r in reports).encode()).hexdigest()
    return f"batch:{digest}"


class ReportBatcher:
    """Gathers reports until the current turn of the event loop ends, then publishes."""

    def __init__(self, publish: Publish, timeout_s: float = ACK_TIMEOUT_S) -> None:
        self._publish = publish  # JetStream publish_async: returns the ack's future
        self._timeout_s = timeout_s
        self._pending: list[tuple[Report, bytes, asyncio.Future[None]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._scheduled = False

    def send(self, report: Report, body: bytes) -> asyncio.Future[None]:
        """Queue ``report`` (``body`` is its encoded form); the future is its message's
        ack from JetStream."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        self._pending.append((report, body, stored))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return stored

    async def close(self) -> None:
        """Wait for messages on their way (their futures are resolved either way)."""
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for batch in _cut(pending):
            task = asyncio.get_running_loop().create_task(self._publish_batch(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _publish_batch(self, batch: list[tuple[Report, bytes, asyncio.Future[None]]]) -> None:
        reports = [report for report, _, _ in batch]
        if len(batch) == 1:
            body = batch[0][1]
        else:
            body = b"[" + b",".join(encoded for _, encoded, _ in batch) + b"]"
        try:
            ack = await self._publish(RESULTS_SUBJECT, body, headers(batch_msg_id(reports)))
            # Bounded: nats-py's ack future never resolves on some server errors.
            await asyncio.wait_for(ack, self._timeout_s)
        except asyncio.CancelledError:  # the worker is going away: nobody is told "stored"
            for _, _, stored in batch:
                stored.cancel()
            raise
        except Exception as exc:
            for _, _, stored in batch:
                if not stored.done():
                    stored.set_exception(exc)
            return
        for _, _, stored in batch:
            if not stored.done():
                stored.set_result(None)


def _cut(
    pending: list[tuple[Report, bytes, asyncio.Future[None]]],
) -> list[list[tuple[Report, bytes, asyncio.Future[None]]]]:
    """Split into messages of at most MAX_BATCH_BYTES (a larger report goes alone) and
    MAX_BATCH_REPORTS reports."""
    batches: list[list[tuple[Report, bytes, asyncio.Future[None]]]] = []
    current: list[tuple[Report, bytes, asyncio.Future[None]]] = []
    size = 0
    for entry in pending:
        length = len(entry[1]) + 1
        if current and (size + length > MAX_BATCH_BYTES or len(current) >= MAX_BATCH_REPORTS):
            batches.append(current)
            current, size = [], 0
        current.append(entry)
        size += length
    if current:
        batches.append(current)
    return batches
