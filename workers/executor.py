"""The worker: pull work by priority, run each attempt within its timeout, report.

- Priorities: queues are probed CRITICAL, HIGH, MEDIUM, LOW ("what is there now"). Aging
  keeps LOW from starving: a queue whose oldest waiting item has waited longer than
  ``starvation_s`` (default 60 s) is probed first. With a backlog younger than that, a
  higher priority always starts first.
- Idle: when every queue is empty the worker sleeps until a core-NATS subscription on
  ``tasks.work.>`` says new work arrived (or a second passed). A queue found empty is
  not probed again until work is announced on its subject, or a second has passed
  (redeliveries and delayed retries are not announced).
- Before a start: a retry that is not due yet goes back with ``nak(delay)``; a task marked
  in the TASK_CANCELLED key-value bucket is dropped without running (one lookup for a
  whole pulled batch: workers/cancel_markers.py).
- Inline handlers (``@inline``: microseconds, never blocking) run at once, in the loop
  turn that admitted them, without an attempt's tasks, timers and lease: one report
  each (gathered with the turn's others), and their work is acked once it is stored.
- Running: a cancel broadcast (``tasks.events.cancelled``) stops the attempt (see
  workers/attempt.py); ``in_progress`` every ack_wait/3 keeps the lease of long handlers.
- Reports go to ``tasks.results`` before the work is acked: a crash in between runs the
  attempt again (handlers run at least once). Those made in one turn of the event loop
  share a message (workers/report_batch.py). An attempt that ends within
  ``QUICK_REPORT_S`` sends one report (its end, carrying its start); a longer one sends a
  started report at that point and its end later.
- ``stop()`` (SIGTERM): stop fetching, let attempts finish within ``grace_s``, then stop
  them and hand their work back (``nak``) for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from workers.attempt import Attempt, Result
from workers.cancel_markers import CancelMarkers
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationExecutor
from workers.protocol import (
    CANCEL_BUCKET,
    CANCELLED_SUBJECT,
    PRIORITIES,
    WORK_STREAM,
    WORK_SUBJECT_PREFIX,
    Report,
    WorkItem,
    cloud_event_decoder,
    encoder,
    work_consumer,
    work_decoder,
    work_identity,
    work_subject,
)
from workers.pull import Puller
from workers.report_batch import ReportBatcher
from workers.stream_state import StreamState
from workers.streams import WORK_ACK_WAIT_S, ensure_streams

log = logging.getLogger(__name__)

REPORT_ACK_TIMEOUT_S = 10.0
FULL_PROBE_INTERVAL_S = 1.0
ANNOUNCED_GRACE_S = 0.05  # a queue announced this recently is probed again soon
REPROBE_DELAY_S = 0.002
# An attempt that ends within this long of its start sends one report, not a started
# report and then its end: half the report traffic for quick tasks, and one trip through
# the results consumer instead of two. A longer attempt shows RUNNING this much later.
QUICK_REPORT_S = 0.05
POISON_WORK = "POISON_WORK"  # error type of a task whose work message cannot be decoded


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Worker:
    """Runs up to ``concurrency`` attempts at once."""

    def __init__(
        self,
        nc: Client,
        worker_id: str | None = None,
        concurrency: int = 4,
        registry: HandlerRegistry | None = None,
        grace_s: float = 30.0,
        starvation_s: float = 60.0,
        ack_wait_s: float = WORK_ACK_WAIT_S,
        quick_report_s: float = QUICK_REPORT_S,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.worker_id = worker_id or default_worker_id()
        self._concurrency = concurrency
        self._registry = registry or HandlerRegistry()
        self._integration = IntegrationExecutor()
        self._grace_s = grace_s
        self._starvation_s = starvation_s
        self._ack_wait_s = ack_wait_s
        self._quick_report_s = quick_report_s
        self._pullers: dict[str, Puller] = {}
        self._markers: CancelMarkers | None = None
        self._reports: ReportBatcher | None = None
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._running: dict[asyncio.Task[None], tuple[Attempt, Msg]] = {}
        # Inline attempts that ran, waiting for their reports to be stored to be acked.
        self._settling: dict[asyncio.Task[None], list[Msg]] = {}
        self._stopping = asyncio.Event()
        self._aging_checked = 0.0
        self._starving: str | None = None
        self._maybe_work: set[str] = set(PRIORITIES)  # queues that may hold work now
        self._announced: dict[str, float] = {}  # queue -> when new work was last announced
        self._full_probe_at = 0.0
        self._streams = StreamState(f"worker {self.worker_id}: stream {WORK_STREAM}", log)

    async def run(self) -> None:
        """Serve until ``stop()``; then let running attempts finish (``grace_s``)."""
        await ensure_streams(self._js, self._ack_wait_s)
        self._markers = CancelMarkers(self._nc, await self._js.key_value(CANCEL_BUCKET))
        self._reports = ReportBatcher(
            lambda subject, body, hdrs: self._js.publish_async(subject, body, headers=hdrs)
        )
        for priority in PRIORITIES:
            self._pullers[priority] = Puller(self._nc, WORK_STREAM, work_consumer(priority))
            await self._pullers[priority].start()

        async def wake(msg: Msg) -> None:
            priority = msg.subject[len(WORK_SUBJECT_PREFIX) :]
            self._maybe_work.add(priority)
            self._announced[priority] = time.monotonic()
            self._wake.set()

        subscriptions = [
            await self._nc.subscribe(f"{WORK_SUBJECT_PREFIX}>", cb=wake),
            await self._nc.subscribe(CANCELLED_SUBJECT, cb=self._on_cancel),
        ]
        log.info("worker %s ready (concurrency %d)", self.worker_id, self._concurrency)
        try:
            await self._serve()
        finally:
            await self._drain_running()
            await self._reports.close()
            await self._markers.close()
            for subscription in subscriptions:
                await subscription.unsubscribe()
            for puller in self._pullers.values():
                await puller.stop()
            await self._integration.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _serve(self) -> None:
        while not self._stopping.is_set():
            free = self._concurrency - len(self._running) - self._settling_count
            if free <= 0:
                if not self._nc.is_connected:  # every slot busy: _order is not reached
                    self._streams.failed("not connected to NATS")
                self._slot_free.clear()
                await _wait_any(self._slot_free, self._stopping, timeout=1.0)
                continue
            self._wake.clear()
            msgs = await self._probe(free)
            if not msgs:
                await _wait_any(self._wake, self._stopping, timeout=self._idle_timeout())
                continue
            await self._begin(msgs)

    async def _probe(self, free: int) -> list[Msg]:
        """Pull from the first queue, in priority order, that has work. A queue that was
        found empty is skipped until new work is announced on its subject (each probe is
        a round trip); redeliveries and delayed retries announce nothing, so every queue
        is probed again at least once a second."""
        now = time.monotonic()
        if now >= self._full_probe_at:
            self._full_probe_at = now + FULL_PROBE_INTERVAL_S
            self._maybe_work.update(PRIORITIES)
        for priority in await self._order():
            if priority not in self._maybe_work:
                continue
            self._maybe_work.discard(priority)  # before the pull: a wake-up during it counts
            msgs = await self._pullers[priority].available(free)
            if len(msgs) >= free:  # there may be more
                self._maybe_work.add(priority)
            if msgs:
                return msgs
        return []

    def _idle_timeout(self) -> float:
        """How long to sleep when every probe came back empty. The wake-up on the subject
        can arrive before the stream lets the message be pulled: a queue announced in the
        last moments is probed again soon rather than at the next full probe."""
        now = time.monotonic()
        ages = {p: now - at for p, at in self._announced.items() if now - at < ANNOUNCED_GRACE_S}
        if not ages:
            return FULL_PROBE_INTERVAL_S
        self._maybe_work.update(ages)
        # Back off as the announcement ages (2 ms, 4, 8, …): a handful of probes, not a
        # storm, when another worker took the message.
        return max(REPROBE_DELAY_S, min(ages.values()))

    async def _order(self) -> list[str]:
        """Strict priority, except that a starving queue goes first (checked each second)."""
        now = time.monotonic()
        if now - self._aging_checked >= 1.0:
            self._aging_checked = now
            # A JetStream API round trip each second: it tells whether the stream answers.
            # Failures are logged once per outage (StreamState), not once per check.
            if not self._nc.is_connected:  # reconnecting: a request would only time out
                self._streams.failed("not connected to NATS")
            else:
                try:
                    self._starving = await self._starving_queue()
                except (TimeoutError, NatsError) as exc:  # no leader or quorum: wait it out
                    self._streams.failed(exc)
                else:
                    self._streams.ok()
        if self._starving is None:
            return list(PRIORITIES)
        self._maybe_work.add(self._starving)
        return [self._starving, *(p for p in PRIORITIES if p != self._starving)]

    async def _starving_queue(self) -> str | None:
        for priority in reversed(PRIORITIES[1:]):  # LOW first: the longest-suffering
            try:
                info = await self._js.consumer_info(WORK_STREAM, work_consumer(priority))
                if not info.num_pending:
                    continue
                oldest = await self._js.get_msg(
                    WORK_STREAM,
                    seq=info.delivered.stream_seq + 1,
                    subject=work_subject(priority),
                    next=True,
                )
            except NotFoundError:
                continue
            stored: datetime | None = oldest.time
            if stored and (datetime.now(UTC) - stored).total_seconds() > self._starvation_s:
                return str(priority)
        return None

    async def _begin(self, msgs: list[Msg]) -> None:
        """Start the attempts of pulled work: due ones whose task is not marked cancelled
        (one lookup for the whole batch)."""
        due: list[tuple[Msg, WorkItem]] = []
        for msg in msgs:
            item = await self._admit(msg)
            if item is not None:
                due.append((msg, item))
        if not due:
            return
        assert self._markers is not None
        try:
            cancelled = await self._markers.marked([item.task_id for _, item in due])
        except Exception as exc:  # unknown: start none of them; they come back later
            log.warning("cancel markers unreadable (%r): %d attempts handed back", exc, len(due))
            for msg, _ in due:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            return
        ran: list[tuple[Msg, asyncio.Future[None]]] = []
        for msg, item in due:
            if item.task_id in cancelled:
                await msg.ack()  # cancelled before it started: nothing to run or report
                continue
            attempt = Attempt(item, self.worker_id, self._registry, self._integration)
            handler = attempt.inline_handler()
            if handler is not None:  # microseconds: run it now, one report
                started_at = now_text()
                result = attempt.run_inline(handler)
                ran.append((msg, self._report(item, result, started_at=started_at)))
                continue
            task = asyncio.create_task(self._run(attempt, msg))
            self._running[task] = (attempt, msg)
            task.add_done_callback(self._finished)
        if ran:
            settle = asyncio.create_task(self._settle(ran))
            self._settling[settle] = [msg for msg, _ in ran]
            settle.add_done_callback(self._settled)

    async def _settle(self, ran: list[tuple[Msg, asyncio.Future[None]]]) -> None:
        """Ack the work of inline attempts once their reports are stored; work whose
        report was not stored stays unacked, and JetStream redelivers it (at least once,
        as for any attempt)."""
        stored = await _stored([report for _, report in ran])
        for (msg, _), done in zip(ran, stored, strict=True):
            if done:
                await msg.ack()
        if not all(stored):
            log.error("%d reports not stored: their work will be redelivered", stored.count(False))

    @property
    def _settling_count(self) -> int:
        """Work of inline attempts not yet acked: it holds its slots until then."""
        return sum(len(msgs) for msgs in self._settling.values())

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.pop(task, None)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("acking inline attempts failed", exc_info=task.exception())

    async def _admit(self, msg: Msg) -> WorkItem | None:
        """The work item, if it can start now: a poison message is dropped, a retry that
        is not due yet goes back to the queue until it is."""
        try:
            item = work_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            await self._poison(msg, exc)
            return None
        if item.not_before:
            due = datetime.fromisoformat(item.not_before)
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0.005:
                await msg.nak(delay=wait)  # back to the queue until it is due
                return None
        return item

    async def _poison(self, msg: Msg, exc: Exception) -> None:
        """Work that cannot be decoded never runs. Its task, named by the message id,
        fails (``POISON_WORK``, not retried) so that nothing waits for it; then the
        message is dropped. Unnamed, it is only dropped (the service's reconciliation
        finds a task left waiting)."""
        identity = work_identity(msg.headers.get("Nats-Msg-Id") if msg.headers else None)
        log.error("poison work message %s discarded: %s", identity or "without a task", exc)
        if identity is not None:
            failed = Result("failed", None, POISON_WORK, str(exc), retryable=False)
            stored = await _stored([self._report(identity, failed, started_at=now_text())])
            if not all(stored):
                return  # not acked: delivered again, and tried again
        await msg.term()

    async def _run(self, attempt: Attempt, msg: Msg) -> None:
        item = attempt.item
        # An attempt that ends within quick_report_s is reported once: its end, with
        # the moment it started. A longer one reports its start when that time is up,
        # and from then on keeps its lease. Reports go out gathered (report_batch.py);
        # the work is acked only once JetStream has stored them, so a crash before that
        # runs the attempt again (at least once).
        started_at = now_text()
        running = asyncio.ensure_future(attempt.run())
        keep_lease: asyncio.Task[None] | None = None
        stored: list[asyncio.Future[None]] = []
        try:
            await asyncio.wait({running}, timeout=self._quick_report_s)
            if not running.done():
                keep_lease = asyncio.create_task(_keep_lease(msg, self._ack_wait_s / 3))
                stored.append(self._report(item, Result("started"), at=started_at))
            result = await running
            if result is not None:
                start = None if stored else started_at
                stored.append(self._report(item, result, started_at=start))
            if not all(await _stored(stored)):
                log.error("reports of %s not stored: its work will be redelivered", item.task_id)
                return
        finally:
            if keep_lease is not None:
                keep_lease.cancel()
            running.cancel()  # stopped from outside (a drain): the attempt stops too
        await msg.ack()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt failed inside the worker", exc_info=task.exception())

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            event = cloud_event_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        for attempt, _ in list(self._running.values()):
            if attempt.item.task_id == event.subject:
                log.info("cancelling attempt %d of %s", attempt.item.attempt, event.subject)
                attempt.cancel(force=bool(event.data.get("force")))

    def _report(
        self,
        item: WorkItem | tuple[str, int],
        result: Result,
        at: str | None = None,
        started_at: str | None = None,
    ) -> asyncio.Future[None]:
        """Send a report (of now, unless ``at``); the returned future resolves once
        JetStream has stored it. ``started_at``: the attempt's start, not reported on
        its own."""
        task_id, attempt = (item.task_id, item.attempt) if isinstance(item, WorkItem) else item
        report = Report(
            task_id=task_id,
            attempt=attempt,
            kind=result.kind,
            worker=self.worker_id,
            at=at or now_text(),
            output=result.output,
            error_type=result.error_type,
            error_message=result.error_message,
            retryable=result.retryable,
            started_at=started_at,
        )
        try:
            body = encoder.encode(report)
        except (TypeError, msgspec.EncodeError) as exc:  # output that is not JSON
            report = msgspec.structs.replace(
                report,
                kind="failed",
                output=None,
                error_type="OUTPUT_NOT_JSON",
                error_message=str(exc),
                retryable=False,
            )
            body = encoder.encode(report)
        assert self._reports is not None
        return self._reports.send(report, body)

    async def _drain_running(self) -> None:
        """Graceful stop: attempts get ``grace_s`` to finish; the rest are handed back."""
        if not self._running and not self._settling:
            return
        await asyncio.wait([*self._running, *self._settling], timeout=self._grace_s)
        for task, (attempt, msg) in list(self._running.items()):
            log.warning("handing back attempt %d of %s", attempt.item.attempt, attempt.item.task_id)
            attempt.cancel(force=True)
            task.cancel()
            with contextlib.suppress(Exception):
                await msg.nak()
        for settle, msgs in list(self._settling.items()):
            settle.cancel()
            for msg in msgs:  # ran, report not yet stored: run again elsewhere
                with contextlib.suppress(Exception):
                    await msg.nak()


async def _stored(reports: list[asyncio.Future[None]]) -> list[bool]:
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


async def _keep_lease(msg: Msg, every_s: float) -> None:
    """Tell JetStream the attempt is alive, so a long handler is not redelivered."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(every_s)
            await msg.in_progress()


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["POISON_WORK", "Worker"]
