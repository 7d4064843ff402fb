"""The results consumer: worker reports from TASK_RESULTS, recorded exactly once.

Each batch of reports is applied by ``TaskService.record_reports`` in one transaction;
then the batch is acked. A report is applied by its own identity against its task's
state, never by stream position: JetStream redelivers out of order (after a crash, a
nak, an ack wait that ran out) and every ``serve`` replica consumes, so a redelivered
report is applied if it is new and changes nothing if it was recorded before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError
from nats.aio.client import Client
from nats.aio.msg import Msg

from commands.messages import RecordReport
from commands.service import TaskService
from workers import tracing
from workers.protocol import RESULTS_CONSUMER, RESULTS_STREAM, Report, decode_reports
from workers.pull import Puller
from workers.streams import RESULTS_ACK_WAIT_S

log = logging.getLogger(__name__)

MAX_REPORTS_PER_BATCH = 1000  # reports recorded in one transaction (as many as fit)
RECORD_SPAN = "taskexec.report.record"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_record(report: Report) -> RecordReport:
    return RecordReport(
        task_id=UUID(report.task_id),
        attempt=report.attempt,
        kind=report.kind,
        worker=report.worker,
        at=_instant(report.at),
        output=report.output,
        error_type=report.error_type,
        error_message=report.error_message,
        retryable=report.retryable,
        started_at=_instant(report.started_at) if report.started_at is not None else None,
        traceback=report.traceback,
    )


class ResultsConsumer:
    """Pulls reports in batches and hands each batch to the service in a thread."""

    def __init__(
        self,
        service: TaskService,
        nc: Client,
        on_recorded: Callable[[], None] = lambda: None,
        batch_size: int = 500,
    ) -> None:
        self._service = service
        self._puller = Puller(nc, RESULTS_STREAM, RESULTS_CONSUMER)
        self._on_recorded = on_recorded
        self._batch_size = batch_size
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self._puller.start()
        try:
            while not self._stopping.is_set():
                msgs = await self._puller.arriving(self._batch_size, expires=0.5)
                if msgs:
                    await self._record(msgs)
        finally:
            await self._puller.stop()

    async def _record(self, msgs: list[Msg]) -> None:
        """Record the reports of ``msgs`` and ack them, at most MAX_REPORTS_PER_BATCH
        reports to a transaction: a message may hold many reports (a worker gathers
        them), and a backlog must not become one huge transaction."""
        chunks = _chunks(msgs)
        progress_at = time.monotonic() + RESULTS_ACK_WAIT_S / 3
        for index, (chunk, reports, traced) in enumerate(chunks):
            started = time.time_ns()
            recorded = await self._apply(reports)
            if recorded is None:
                return  # stopping: the rest is redelivered
            if traced:
                record_spans(traced, started, len(reports))
            for msg in chunk:
                await msg.ack()
            if recorded:
                self._on_recorded()
            if time.monotonic() >= progress_at:  # a long backlog: keep the rest ours
                for later, _, _ in chunks[index + 1 :]:
                    for msg in later:
                        await msg.in_progress()
                progress_at = time.monotonic() + RESULTS_ACK_WAIT_S / 3

    async def _apply(self, reports: list[RecordReport]) -> int | None:
        """The number of events recorded; None if stopped before it could be done."""
        attempt = 0
        while True:
            attempt += 1
            try:
                recorded: int = await asyncio.to_thread(self._service.record_reports, reports)
                return recorded
            except IntegrityError:  # a task changed meanwhile (a cancel): fresh state, again
                if attempt < 3:
                    continue
                log.exception("recording %d reports clashed %d times", len(reports), attempt)
            except Exception:
                log.exception("recording %d reports failed; retrying", len(reports))
            await asyncio.sleep(1.0)
            if self._stopping.is_set():
                return None


Chunk = tuple[list[Msg], list[RecordReport], list[Report]]  # msgs, reports, traced ones


def _chunks(msgs: list[Msg]) -> list[Chunk]:
    """Consecutive runs of ``msgs`` with their decoded reports (at most
    MAX_REPORTS_PER_BATCH, unless one message alone holds more), and those of them that
    carry a trace context when tracing is on. An undecodable message is logged and
    counts as empty."""
    chunks: list[Chunk] = []
    chunk: list[Msg] = []
    reports: list[RecordReport] = []
    traced: list[Report] = []
    tracing_on = tracing.active()
    for msg in msgs:
        try:
            received = decode_reports(msg.data)
            decoded = [to_record(report) for report in received]
        except (msgspec.DecodeError, ValueError) as exc:
            sequence = msg.metadata.sequence.stream
            log.error("undecodable report at stream sequence %s discarded: %s", sequence, exc)
            received, decoded = [], []
        if chunk and len(reports) + len(decoded) > MAX_REPORTS_PER_BATCH:
            chunks.append((chunk, reports, traced))
            chunk, reports, traced = [], [], []
        chunk.append(msg)
        reports.extend(decoded)
        if tracing_on:
            traced.extend(report for report in received if report.trace)
    if chunk:
        chunks.append((chunk, reports, traced))
    return chunks


def record_spans(traced: list[Report], started: int, batch: int) -> None:
    """A ``taskexec.report.record`` span for each traced report, under its attempt's
    span: the transaction that recorded it with the rest of its batch."""
    ended = time.time_ns()
    for report in traced:
        attributes = {
            "taskexec.task_id": report.task_id,
            "taskexec.attempt": report.attempt,
            "taskexec.report": report.kind,
            "taskexec.batch": batch,
        }
        tracing.record(RECORD_SPAN, "consumer", report.trace, started, ended, attributes)
