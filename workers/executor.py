"""The worker: pull work by priority, run each attempt within its timeout, report.

- Pulling: from its executor pools' queues only (``pools``), by priority, with aging,
  only from queues that may hold work (workers/queue_probe.py); idle until
  ``tasks.queued.[<pool>.]<priority>`` announces work of one of its pools, or a second
  passed.
- Before a start: poison, not due yet, marked cancelled (workers/admission.py); with
  ``--cpus``/``--memory``, only what fits beside the running attempts (workers/capacity.py).
- Inline handlers (``@inline``: microseconds, never blocking) run at once, without an
  attempt's tasks, timers and lease: one report each, work acked once it is stored.
- Running: a cancel broadcast stops the attempt (workers/attempt.py); ``in_progress``
  every ack_wait/3 keeps the lease of long handlers.
- Reports go to ``tasks.results`` before the work is acked: a crash in between runs the
  attempt again (handlers run at least once).
- ``stop()`` (SIGTERM): stop fetching, let attempts finish within ``grace_s``, then stop
  them and hand their work back (``nak``) for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from domain.executor_pool import DEFAULT_POOL
from workers.admission import admit, marked_cancelled, stopped
from workers.attempt import Attempt, AttemptObserver, Result
from workers.cancel_markers import CancelMarkers
from workers.capacity import Capacity, Ledger
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationExecutor
from workers.protocol import (
    CANCEL_BUCKET,
    CANCELLED_SUBJECT,
    WORK_STREAM,
    WorkItem,
    cloud_event_decoder,
)
from workers.queue_probe import QueueProbe, wait_any
from workers.report_batch import ReportBatcher
from workers.reports import ack_once_stored, encoded_report, keep_lease, now_text, wait_stored
from workers.sandbox import Sandbox
from workers.stream_state import StreamState
from workers.streams import WORK_ACK_WAIT_S, ensure_streams

log = logging.getLogger(__name__)

# An attempt that ends within this long of its start sends one report, not a started
# report and then its end: half the report traffic for quick tasks, and one trip through
# the results consumer instead of two. A longer attempt shows RUNNING this much later.
QUICK_REPORT_S = 0.05


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


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
        metrics: AttemptObserver | None = None,
        pools: Sequence[str] = (DEFAULT_POOL,),
        capacity: Capacity | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._ledger = Ledger(capacity or Capacity(), self._js)
        self._sandbox = sandbox or Sandbox()  # HIGH attempts' directories and user
        self.worker_id = worker_id or default_worker_id()
        self._concurrency = concurrency
        self._registry = registry or HandlerRegistry()
        self._integration = IntegrationExecutor()
        self._grace_s = grace_s
        self._ack_wait_s = ack_wait_s
        self._quick_report_s = quick_report_s
        self._meter = metrics  # workers/metrics.py
        self._pools = tuple(pools)
        self._markers: CancelMarkers | None = None
        self._reports: ReportBatcher | None = None
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._running: dict[asyncio.Task[None], tuple[Attempt, Msg]] = {}
        # Inline attempts that ran, waiting for their reports to be stored to be acked.
        self._settling: dict[asyncio.Task[None], list[Msg]] = {}
        self._stopping = asyncio.Event()
        self._streams = StreamState(f"worker {self.worker_id}: stream {WORK_STREAM}", log)
        self._queues = QueueProbe(nc, self._js, starvation_s, self._streams)

    async def run(self) -> None:
        """Serve until ``stop()``; then let running attempts finish (``grace_s``)."""
        await ensure_streams(self._js, self._ack_wait_s)
        self._sandbox.open()  # removes what killed workers left
        self._markers = CancelMarkers(self._nc, await self._js.key_value(CANCEL_BUCKET))
        self._reports = ReportBatcher(
            lambda subject, body, hdrs: self._js.publish_async(subject, body, headers=hdrs)
        )
        await self._queues.join(self._pools, self._ack_wait_s)
        subscriptions = [
            *await self._queues.listen(self._wake),  # work announced for one of its pools
            await self._nc.subscribe(CANCELLED_SUBJECT, cb=self._on_cancel),
        ]
        pools, limits = ", ".join(self.pools), self._ledger.capacity.describe()
        ready = f"concurrency {self._concurrency}, pools {pools}, {limits}"
        log.info("worker %s ready (%s)", self.worker_id, ready)
        try:
            await self._serve()
        finally:
            await self._drain_running()
            await self._reports.close()
            await self._markers.close()
            for subscription in subscriptions:
                await subscription.unsubscribe()
            await self._queues.close()
            await self._integration.close()
            self._sandbox.close()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def pools(self) -> tuple[str, ...]:
        return self._queues.pools or self._pools  # the executor pools it takes work of

    @property
    def ready(self) -> bool:
        """Pulling work: started, not stopping, and its stream answers (the probe)."""
        return bool(self._queues.pools) and not self._stopping.is_set() and self._streams.reachable

    async def _serve(self) -> None:
        while not self._stopping.is_set():
            free = self._concurrency - len(self._running) - self._settling_count
            if free <= 0:
                if not self._nc.is_connected:  # every slot busy: no probe notices it
                    self._streams.failed("not connected to NATS")
                self._slot_free.clear()
                await wait_any(self._slot_free, self._stopping, timeout=1.0)
                continue
            self._wake.clear()
            msgs = await self._queues.probe(free)
            if not msgs:
                await wait_any(self._wake, self._stopping, timeout=self._queues.idle_timeout())
                continue
            await self._begin(msgs)
            await self._ledger.room(self._stopping)  # if work went back for want of it

    async def _begin(self, msgs: list[Msg]) -> None:
        """Start the attempts of pulled work: due ones whose task is not marked cancelled
        (one lookup for the whole batch)."""
        due: list[tuple[Msg, WorkItem]] = []
        for msg in msgs:
            item = await admit(msg, self._report)
            if item is not None:
                due.append((msg, item))
        if not due:
            return
        assert self._markers is not None
        cancelled = await marked_cancelled(self._markers, due)
        if cancelled is None:
            return
        ran: list[tuple[Msg, asyncio.Future[None]]] = []
        for msg, item in due:
            if stopped(item, cancelled):
                await msg.ack()  # cancelled before it started: nothing to run or report
                continue
            if not await self._ledger.admits(msg, item):
                continue  # handed back: it does not fit now, or never here
            attempt = Attempt(
                item, self.worker_id, self._registry, self._integration, self._meter, self._sandbox
            )
            handler = attempt.inline_handler()
            if handler is not None:  # microseconds: run it now, one report
                started_at = now_text()
                result = attempt.run_inline(handler)
                self._ledger.release(item)
                report = self._report(item, result, started_at=started_at, trace=attempt.trace)
                ran.append((msg, report))
                continue
            task = asyncio.create_task(self._run(attempt, msg))
            self._running[task] = (attempt, msg)
            task.add_done_callback(self._finished)
        if ran:
            settle = asyncio.create_task(ack_once_stored(ran))
            self._settling[settle] = [msg for msg, _ in ran]
            settle.add_done_callback(self._settled)

    @property
    def _settling_count(self) -> int:
        """Work of inline attempts not yet acked: it holds its slots until then."""
        return sum(len(msgs) for msgs in self._settling.values())

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.pop(task, None)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("acking inline attempts failed", exc_info=task.exception())

    async def _run(self, attempt: Attempt, msg: Msg) -> None:
        item = attempt.item
        # An attempt that ends within quick_report_s is reported once: its end, with
        # the moment it started. A longer one reports its start when that time is up,
        # and from then on keeps its lease. Reports go out gathered (report_batch.py);
        # the work is acked only once JetStream has stored them, so a crash before that
        # runs the attempt again (at least once).
        started_at = now_text()
        running = asyncio.ensure_future(attempt.run())
        lease: asyncio.Task[None] | None = None
        stored: list[asyncio.Future[None]] = []
        try:
            await asyncio.wait({running}, timeout=self._quick_report_s)
            if not running.done():
                lease = asyncio.create_task(keep_lease(msg, self._ack_wait_s / 3))
                started = Result("started")
                stored.append(self._report(item, started, at=started_at, trace=attempt.trace))
            result = await running
            if result is not None:
                start = None if stored else started_at
                stored.append(self._report(item, result, started_at=start, trace=attempt.trace))
            if not all(await wait_stored(stored)):
                log.error("reports of %s not stored: its work will be redelivered", item.task_id)
                return
        finally:
            if lease is not None:
                lease.cancel()
            running.cancel()  # stopped from outside (a drain): the attempt stops too
        await msg.ack()

    def _finished(self, task: asyncio.Task[None]) -> None:
        attempt, _ = self._running.pop(task, (None, None))
        if attempt is not None:
            self._ledger.release(attempt.item)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt failed inside the worker", exc_info=task.exception())

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            event = cloud_event_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        for attempt, _ in list(self._running.values()):
            if attempt.item.task_id == event.subject and event.taskversion > attempt.item.requeued:
                log.info("cancelling attempt %d of %s", attempt.item.attempt, event.subject)
                attempt.cancel(force=bool(event.data.get("force")))

    def _report(
        self,
        item: WorkItem | tuple[str, int],
        result: Result,
        at: str | None = None,
        started_at: str | None = None,
        trace: dict[str, str] | None = None,
    ) -> asyncio.Future[None]:
        """Send a report (workers/reports.py); the returned future resolves once
        JetStream has stored it."""
        task_id, attempt = (item.task_id, item.attempt) if isinstance(item, WorkItem) else item
        report, body = encoded_report(
            self.worker_id, task_id, attempt, result, at, started_at, trace
        )
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
