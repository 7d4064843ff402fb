"""What a worker does with pulled work before an attempt starts: a message that cannot be
decoded fails its task (``POISON_WORK``) and is dropped; a retry that is not due yet goes
back with ``nak(delay)``; a task marked in the TASK_CANCELLED key-value bucket is dropped
without running (one lookup for a whole pulled batch: workers/cancel_markers.py), unless
the work follows a requeue of the task after that cancel (``stopped``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg

from workers.attempt import Result
from workers.cancel_markers import CancelMarkers
from workers.protocol import WorkItem, work_decoder, work_identity
from workers.reports import now_text, wait_stored

log = logging.getLogger("workers.executor")  # the worker's logger, as before

POISON_WORK = "POISON_WORK"  # error type of a task whose work message cannot be decoded
# Sends a report of (task id, attempt); resolves once JetStream has stored it.
SendReport = Callable[..., asyncio.Future[None]]


async def admit(msg: Msg, report: SendReport) -> WorkItem | None:
    """The work item, if it can start now: a poison message is dropped, a retry that
    is not due yet goes back to the queue until it is."""
    try:
        item = work_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        await _poison(msg, exc, report)
        return None
    if item.not_before:
        due = datetime.fromisoformat(item.not_before)
        wait = (due - datetime.now(UTC)).total_seconds()
        if wait > 0.005:
            await msg.nak(delay=wait)  # back to the queue until it is due
            return None
    return item


async def _poison(msg: Msg, exc: Exception, report: SendReport) -> None:
    """Work that cannot be decoded never runs. Its task, named by the message id,
    fails (``POISON_WORK``, not retried) so that nothing waits for it; then the
    message is dropped. Unnamed, it is only dropped (the service's reconciliation
    finds a task left waiting)."""
    identity = work_identity(msg.headers.get("Nats-Msg-Id") if msg.headers else None)
    log.error("poison work message %s discarded: %s", identity or "without a task", exc)
    if identity is not None:
        failed = Result("failed", None, POISON_WORK, str(exc), retryable=False)
        stored = await wait_stored([report(identity, failed, started_at=now_text())])
        if not all(stored):
            return  # not acked: delivered again, and tried again
    await msg.term()


async def marked_cancelled(
    markers: CancelMarkers, due: list[tuple[Msg, WorkItem]]
) -> dict[str, int] | None:
    """The tasks of ``due`` marked cancelled, each with its marker's task version (see
    ``stopped``). None when the bucket cannot be read: then none of them starts, and
    their work is handed back to come again later."""
    try:
        return await markers.versions([item.task_id for _, item in due])
    except Exception as exc:  # unknown: start none of them; they come back later
        log.warning("cancel markers unreadable (%r): %d attempts handed back", exc, len(due))
        for msg, _ in due:
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
        return None


def stopped(item: WorkItem, cancelled: dict[str, int]) -> bool:
    """Does a cancel marker stop ``item``? Yes, unless the work follows a requeue that came
    after the cancel (``item.requeued``, the requeue's task version, above the marker's).
    Work published before the cancel (a retry that was waiting) never follows a requeue,
    so the marker stops it even once the task runs again."""
    if item.task_id not in cancelled:
        return False
    return item.requeued == 0 or cancelled[item.task_id] > item.requeued
