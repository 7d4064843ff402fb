"""The worker: pull work by priority, run the handler within its timeout, report.

Probe order is CRITICAL, HIGH, MEDIUM, LOW; when every queue is empty the worker
sleeps until a core-NATS subscription on ``tasks.work.>`` says new work arrived (or a
second passed). Reports go to ``tasks.results`` before the work message is acked:
a crash in between means the attempt runs again (handlers run at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from workers.handlers import HandlerRegistry, TaskContext
from workers.integration import IntegrationExecutor
from workers.protocol import (
    PRIORITIES,
    RESULTS_SUBJECT,
    WORK_STREAM,
    WORK_SUBJECT_PREFIX,
    Report,
    WorkItem,
    encoder,
    work_consumer,
    work_decoder,
)
from workers.pull import Puller
from workers.streams import WORK_ACK_WAIT_S, ensure_streams, headers

log = logging.getLogger(__name__)


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
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.worker_id = worker_id or default_worker_id()
        self._concurrency = concurrency
        self._registry = registry or HandlerRegistry()
        self._integration = IntegrationExecutor()
        self._pullers: list[Puller] = []
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Serve until ``stop()``; then let running attempts finish."""
        await ensure_streams(self._js)
        self._pullers = [Puller(self._nc, WORK_STREAM, work_consumer(p)) for p in PRIORITIES]
        for puller in self._pullers:
            await puller.start()

        async def wake(_msg: Msg) -> None:
            self._wake.set()

        wake_sub = await self._nc.subscribe(f"{WORK_SUBJECT_PREFIX}>", cb=wake)
        log.info("worker %s ready (concurrency %d)", self.worker_id, self._concurrency)
        try:
            while not self._stopping.is_set():
                free = self._concurrency - len(self._running)
                if free <= 0:
                    self._slot_free.clear()
                    await _wait_any(self._slot_free, self._stopping, timeout=1.0)
                    continue
                self._wake.clear()
                msgs = await self._probe(free)
                if not msgs:
                    await _wait_any(self._wake, self._stopping, timeout=1.0)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self._attempt(msg))
                    self._running.add(task)
                    task.add_done_callback(self._finished)
        finally:
            await wake_sub.unsubscribe()
            if self._running:
                await asyncio.wait(self._running, timeout=30)
            for puller in self._pullers:
                await puller.stop()
            await self._integration.close()

    def stop(self) -> None:
        self._stopping.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_free.set()

    async def _probe(self, free: int) -> list[Msg]:
        for puller in self._pullers:
            msgs = await puller.available(free)
            if msgs:
                return msgs
        return []

    async def _attempt(self, msg: Msg) -> None:
        try:
            item = work_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.error("poison work message discarded: %s", exc)
            await msg.term()
            return
        await self._report(item, "started")
        keep_lease = asyncio.create_task(_keep_lease(msg))
        try:
            output = await asyncio.wait_for(self._execute(item), item.timeout_ms / 1000)
        except TimeoutError:
            await self._report(
                item,
                "failed",
                error_type="TIMEOUT",
                error_message=f"attempt exceeded its timeout of {item.timeout_ms} ms",
            )
        except Exception as exc:  # the handler's failure is the task's failure
            await self._report(
                item, "failed", error_type=type(exc).__name__, error_message=str(exc)
            )
        else:
            await self._report(item, "completed", output=output)
        finally:
            keep_lease.cancel()
        await msg.ack()

    async def _execute(self, item: WorkItem) -> Any:
        context = TaskContext(
            task_id=item.task_id,
            attempt=item.attempt,
            definition_id=item.definition_id,
            worker=self.worker_id,
            timeout_ms=item.timeout_ms,
        )
        if item.task_type == "INTEGRATION":
            if not item.endpoint:
                raise ValueError("INTEGRATION task without an endpoint")
            return await self._integration.call(item.endpoint, item.input, item.timeout_ms / 1000)
        if not item.handler:
            raise ValueError(f"{item.task_type} task without a handler")
        return await self._registry.call(item.handler, item.input, context)

    async def _report(self, item: WorkItem, kind: str, **fields: Any) -> None:
        report = Report(
            task_id=item.task_id,
            attempt=item.attempt,
            kind=kind,
            worker=self.worker_id,
            at=now_text(),
            **fields,
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
            )
            body = encoder.encode(report)
        await self._js.publish(RESULTS_SUBJECT, body, headers=headers(report.msg_id), timeout=10)


async def _keep_lease(msg: Msg) -> None:
    """Tell JetStream the attempt is alive, so a long handler is not redelivered."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(WORK_ACK_WAIT_S / 3)
            await msg.in_progress()


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
