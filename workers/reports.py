"""A worker's reports: built from an attempt's ``Result``, encoded (an output that is not
JSON fails the attempt, ``OUTPUT_NOT_JSON``), and waited for until JetStream has stored
them; the lease that keeps a long attempt's work from being redelivered; acking the work
of inline attempts once their reports are stored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg

from workers.attempt import Result
from workers.protocol import Report, encoder

REPORT_ACK_TIMEOUT_S = 10.0
log = logging.getLogger("workers.executor")  # the worker's logger


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encoded_report(
    worker_id: str,
    task_id: str,
    attempt: int,
    result: Result,
    at: str | None = None,
    started_at: str | None = None,
    trace: dict[str, str] | None = None,
) -> tuple[Report, bytes]:
    """The report of ``result`` (made now, unless ``at``) and its bytes. ``started_at``:
    the attempt's start, not reported on its own; ``trace``: the attempt span's context."""
    report = Report(
        task_id=task_id,
        attempt=attempt,
        kind=result.kind,
        worker=worker_id,
        at=at or now_text(),
        output=result.output,
        error_type=result.error_type,
        error_message=result.error_message,
        retryable=result.retryable,
        started_at=started_at,
        traceback=result.traceback,
        trace=trace,
    )
    try:
        return report, encoder.encode(report)
    except (TypeError, msgspec.EncodeError) as exc:  # output that is not JSON
        report = msgspec.structs.replace(
            report,
            kind="failed",
            output=None,
            error_type="OUTPUT_NOT_JSON",
            error_message=str(exc),
            retryable=False,
            traceback=None,
        )
        return report, encoder.encode(report)


async def wait_stored(reports: list[asyncio.Future[None]]) -> list[bool]:
    """Wait until JetStream has stored the reports (bounded, as a last resort: the
    batcher bounds each publish itself); whether each was stored."""
    if not reports:
        return []
    try:
        await asyncio.wait(reports, timeout=REPORT_ACK_TIMEOUT_S)
    finally:
        for report in reports:
            report.cancel()  # not stored in time (or stopping): nobody waits any more
    return [not report.cancelled() and report.exception() is None for report in reports]


async def keep_lease(msg: Msg, every_s: float) -> None:
    """Tell JetStream the attempt is alive, so a long handler is not redelivered."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(every_s)
            await msg.in_progress()


async def ack_once_stored(ran: list[tuple[Msg, asyncio.Future[None]]]) -> None:
    """Ack the work of inline attempts once their reports are stored; work whose
    report was not stored stays unacked, and JetStream redelivers it (at least once,
    as for any attempt)."""
    stored = await wait_stored([report for _, report in ran])
    for (msg, _), done in zip(ran, stored, strict=True):
        if done:
            await msg.ack()
    if not all(stored):
        log.error("%d reports not stored: their work will be redelivered", stored.count(False))
