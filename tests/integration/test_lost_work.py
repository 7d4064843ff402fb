"""Every way a task can lose its work ends with the task FAILED with a clear error type,
or its work published again: a real nats-server, the real service, both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from api.runtime import Runtime
from api.settings import Settings
from commands.messages import CancelTask, Outcome, RecordReport, RequeueTask, SubmitTask
from commands.service import TaskService
from domain.task import UNDELIVERABLE
from domain.values import ANONYMOUS, TaskStatus
from tests.conftest import EXAMPLE_INPUT
from workers.admission import POISON_WORK
from workers.bridge.lost_work import LostWork
from workers.bridge.outbox import Outbox
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import WORK_STREAM, work_consumer, work_decoder, work_subject
from workers.pull import Puller
from workers.streams import headers

WAIT_S = 15.0


def order() -> SubmitTask:
    return SubmitTask(definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ANONYMOUS)


async def publish_outbox(service: TaskService, nc: Client) -> None:
    """What the relay would publish, published."""
    batch = await asyncio.to_thread(Outbox(service).read, 0)
    assert batch is not None
    for message in batch.messages:
        await nc.jetstream().publish(message.subject, message.body, headers=headers(message.msg_id))


async def until(check: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            pytest.fail(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.05)


async def hand_back(puller: Puller, seen: list[str]) -> None:
    """Take work and hand it back at once, again and again (as workers dying in an
    attempt's first moments would), noting each message's Nats-Msg-Id once; until
    cancelled. JetStream judges a message's deliveries spent on the next pull."""
    while True:
        for msg in await puller.available(1, timeout=0.2):
            assert msg.headers is not None
            if msg.headers["Nats-Msg-Id"] not in seen:
                seen.append(msg.headers["Nats-Msg-Id"])
            await msg.nak()


async def work_in_stream(nc: Client) -> int:
    return int((await nc.jetstream().stream_info(WORK_STREAM)).state.messages)


async def relayed(nc: Client) -> None:
    """Wait until the relay has published the one task's work."""
    for _ in range(300):
        if await work_in_stream(nc) == 1:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the relay did not publish the work")


async def test_work_never_taken_up_is_published_again_then_its_task_fails(
    service: TaskService, nc: Client
) -> None:
    task = service.submit(order())
    await publish_outbox(service, nc)
    lost = LostWork(service, nc, republish_limit=1)
    await lost.start()
    puller = Puller(nc, WORK_STREAM, work_consumer("medium"))
    await puller.start()
    seen: list[str] = []
    handing_back = asyncio.create_task(hand_back(puller, seen))
    try:
        await until(lambda: service.load(task.task_id).status is TaskStatus.FAILED, "failed")
        stored = service.load(task.task_id)
        assert stored.error is not None and stored.error["type"] == UNDELIVERABLE
        # Never started: its work came back once, as a copy with a message id of its own.
        assert seen == [f"{task.task_id}:1:work", f"{task.task_id}:1:work:again-1"]
        for _ in range(100):  # the exhausted messages are deleted from the queue
            if await work_in_stream(nc) == 0:
                break
            await asyncio.sleep(0.05)
        assert await work_in_stream(nc) == 0
    finally:
        handing_back.cancel()
        await puller.stop()
        await lost.stop()


async def test_work_of_a_started_attempt_that_runs_out_of_deliveries_fails_its_task(
    service: TaskService, nc: Client
) -> None:
    task = service.submit(order())
    await publish_outbox(service, nc)
    started = RecordReport(task.task_id, 1, "started", "w-1", task.created_at)
    service.record_reports([started])
    lost = LostWork(service, nc)
    await lost.start()
    puller = Puller(nc, WORK_STREAM, work_consumer("medium"))
    await puller.start()
    seen: list[str] = []
    handing_back = asyncio.create_task(hand_back(puller, seen))
    try:
        await until(lambda: service.load(task.task_id).status is TaskStatus.FAILED, "failed")
        assert [type(e).__name__ for e in service.events.get(task.task_id)] == [
            "Submitted",
            "Started",
            "Failed",
        ]
        assert seen == [f"{task.task_id}:1:work"]  # started once: not published again
    finally:
        handing_back.cancel()
        await puller.stop()
        await lost.stop()


@pytest.fixture
async def runtime(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[Runtime]:
    running = await asyncio.to_thread(
        Runtime.open, Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    )
    await running.start_messaging(nats_server.url)
    yield running
    await running.stop_messaging()
    await asyncio.to_thread(running.close)


async def test_a_pending_task_whose_work_is_nowhere_gets_it_again(
    runtime: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    try:
        task = await asyncio.to_thread(runtime.submit, order())
        await relayed(client)
        await js.purge_stream(WORK_STREAM)  # lost: purged by hand, a server's disk, …
        await until(lambda: runtime.runner.position >= task.position, "projected")

        assert await runtime.reconcile_lost_work(after_s=0) == 1
        msg = await js.get_last_msg(WORK_STREAM, work_subject("medium"))
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == f"{task.task_id}:1:work:reconciled-1"
        assert work_decoder.decode(msg.data or b"").task_id == str(task.task_id)
        # Its work is in the queue now: not lost, not published again.
        assert await runtime.reconcile_lost_work(after_s=0) == 0
        assert await work_in_stream(client) == 1
    finally:
        await client.close()


async def test_the_lost_work_of_a_requeued_task_is_published_again_as_requeued_work(
    runtime: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    """A cancelled task retried: its work carries the requeue's version (so the cancel
    marker does not stop it), also when it is published again."""
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    try:
        task = await asyncio.to_thread(runtime.submit, order())
        await asyncio.to_thread(runtime.cancel, CancelTask(task.task_id, ANONYMOUS))
        [requeued] = await asyncio.to_thread(
            runtime.service.execute, [RequeueTask(task.task_id, ANONYMOUS)]
        )
        assert isinstance(requeued, Outcome)
        for _ in range(300):  # the submit's work and the requeue's
            if await work_in_stream(client) == 2:
                break
            await asyncio.sleep(0.05)
        msg = await js.get_last_msg(WORK_STREAM, work_subject("medium"))
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == f"{task.task_id}:1:work:requeued-3"
        assert work_decoder.decode(msg.data or b"").requeued == 3
        await js.purge_stream(WORK_STREAM)
        await until(lambda: runtime.runner.position >= requeued.position, "projected")

        assert await runtime.reconcile_lost_work(after_s=0) == 1
        msg = await js.get_last_msg(WORK_STREAM, work_subject("medium"))
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == f"{task.task_id}:1:work:requeued-3-reconciled-3"
        item = work_decoder.decode(msg.data or b"")
        assert (item.attempt, item.requeued) == (1, 3)
    finally:
        await client.close()


async def test_undecodable_work_fails_the_task_it_names(
    runtime: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    task = await asyncio.to_thread(runtime.submit, order())
    client = await nats.connect(nats_server.url)
    await relayed(client)
    await client.jetstream().purge_stream(WORK_STREAM)
    worker_nc = await nats.connect(nats_server.url)
    worker = Worker(worker_nc, worker_id="w-poison")
    running = asyncio.create_task(worker.run())
    try:
        # A copy of the task's work, garbled on the way (its own message id: the first
        # copy's is within JetStream's duplicate window).
        poison_id = f"{task.task_id}:1:work:again-1"
        await client.jetstream().publish(work_subject("high"), b"{not", headers=headers(poison_id))

        def failed() -> bool:
            return runtime.service.load(task.task_id).status is TaskStatus.FAILED

        await until(failed, "failed")
        stored = runtime.service.load(task.task_id)
        assert stored.error is not None and stored.error["type"] == POISON_WORK
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await worker_nc.close()
        await client.close()
