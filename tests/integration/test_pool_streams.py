"""Executor pools in JetStream, without the service: the NATS behaviour the design leans
on (a WorkQueue stream keeps work no consumer is interested in yet, and a consumer made
later takes it), and the upgrade (a TASK_WORK made before pools, with work stored in it,
carries on)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats
from nats.js.api import RePublish

from tests.conftest import EXAMPLE_INPUT
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import (
    RESULTS_STREAM,
    RESULTS_SUBJECT,
    WORK_STREAM,
    WorkItem,
    decode_reports,
    work_consumer,
    work_msg_id,
    work_subject,
)
from workers.pull import Puller
from workers.streams import ensure_streams, headers, stream_configs, work_consumer_config


async def test_a_work_queue_keeps_a_pools_work_until_its_consumer_is_made(
    nats_server: EmbeddedNatsServer,
) -> None:
    """Published before any consumer of its subject exists: kept, and taken by the consumer
    made later (the relay or the pool's first worker makes it, whichever comes first)."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await js.publish(work_subject("high", "late"), b"early work", stream=WORK_STREAM)
        assert (await js.stream_info(WORK_STREAM)).state.messages == 1
        await js.add_consumer(WORK_STREAM, work_consumer_config("high", "late"))
        puller = Puller(nc, WORK_STREAM, work_consumer("high", "late"))
        await puller.start()
        try:
            [msg] = await puller.available(5)
            assert msg.data == b"early work"
            await msg.ack_sync()
        finally:
            await puller.stop()
        assert (await js.stream_info(WORK_STREAM)).state.messages == 0
    finally:
        await nc.close()


async def test_an_older_task_work_stream_and_its_stored_work_carry_on_after_the_upgrade(
    nats_server: EmbeddedNatsServer,
) -> None:
    """TASK_WORK as a version before pools made it (announcements of ``tasks.work.*``
    only) with work stored on ``tasks.work.medium``: brought up to date in place by
    ``ensure_streams``; the stored work runs on a default-pool worker, and a pool's new
    work is announced on ``tasks.queued.<pool>.<priority>``."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        old = next(c for c in stream_configs() if c.name == WORK_STREAM)
        old.republish = RePublish(src="tasks.work.*", dest="tasks.queued.{{wildcard(1)}}")
        old.republish.headers_only = True
        await js.add_stream(old)
        stored = WorkItem(
            task_id="old-task",
            attempt=1,
            task_type="AUTOMATED",
            definition_id="calculate-order-total",
            input=EXAMPLE_INPUT,
            timeout_ms=10_000,
            priority="MEDIUM",
            handler="workers.handlers.orders:calculate_order_total",
        )
        body = msgspec.json.encode(stored).replace(b',"executor":null', b"")  # as older ones
        await js.publish(work_subject("medium"), body, headers=headers(work_msg_id("old-task", 1)))

        await ensure_streams(js)  # what serve or a worker of this version does at start
        info = await js.stream_info(WORK_STREAM)
        assert info.config.republish is not None
        assert (info.config.republish.src, info.config.republish.dest) == (
            "tasks.work.>",
            "tasks.queued.>",
        )
        announced: list[str] = []

        async def heard(msg: Any) -> None:
            announced.append(msg.subject)

        await nc.subscribe("tasks.queued.>", cb=heard)
        await js.publish(work_subject("high", "gpu"), b"{}", headers=headers("gpu-work"))

        worker = Worker(nc, worker_id="upgraded")
        running = asyncio.create_task(worker.run())
        try:
            report = None
            for _ in range(200):  # the stored work ran: its report is in TASK_RESULTS
                try:
                    msg = await js.get_last_msg(RESULTS_STREAM, RESULTS_SUBJECT)
                except nats.js.errors.NotFoundError:
                    await asyncio.sleep(0.05)
                    continue
                report = decode_reports(msg.data or b"")[-1]
                break
            assert report is not None
            assert (report.task_id, report.kind, report.worker) == (
                "old-task",
                "completed",
                "upgraded",
            )
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
        assert "tasks.queued.gpu.high" in announced
        kept = await js.get_last_msg(WORK_STREAM, work_subject("high", "gpu"))  # not its pool
        assert kept.data == b"{}"
    finally:
        await nc.close()
