"""What NATS cannot take never stops the service: refused at the door when it would be
too large, and set aside by the relay (its task FAILED) if it got in anyway."""

from __future__ import annotations

import asyncio

import nats
import pytest

from commands.errors import TooLarge
from commands.messages import SubmitTask
from commands.service import TaskService
from domain.task import UNPUBLISHABLE
from domain.values import ANONYMOUS, TaskStatus
from tests.conftest import EXAMPLE_INPUT
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import WORK_STREAM
from workers.streams import ensure_streams


def order(**fields: object) -> SubmitTask:
    return SubmitTask(
        definition_id="calculate-order-total",
        input={**EXAMPLE_INPUT, **fields},
        actor=ANONYMOUS,
    )


def test_an_input_over_the_limit_is_refused_and_records_nothing(service: TaskService) -> None:
    service.max_input_bytes = 2_000
    before = service.recorder.max_notification_id()
    with pytest.raises(TooLarge) as refused:
        service.submit(order(note="x" * 2_000))
    assert refused.value.details["limit"] == 2_000
    assert refused.value.details["size"] > 2_000
    assert service.recorder.max_notification_id() == before

    big, small = service.submit_many([order(note="x" * 2_000), order()])
    assert isinstance(big, TooLarge)
    assert not isinstance(small, Exception)
    assert service.load(small.task_id).status is TaskStatus.PENDING


async def test_the_relay_sets_aside_what_nats_cannot_take_and_the_log_flows_on(
    service: TaskService, nats_server: EmbeddedNatsServer
) -> None:
    # Accepted without a limit (an older service, a server whose limit was lowered since).
    big = service.submit(order(note="x" * 1_200_000))  # over nats-server's 1 MB
    small = service.submit(order())
    nc = await nats.connect(nats_server.url)
    try:
        await ensure_streams(nc.jetstream())
        outbox = Outbox(service)
        relay = Relay(outbox, JetStreamPublisher(nc), poll_interval=0.02)
        run = asyncio.create_task(relay.run())
        try:
            for _ in range(300):
                if await asyncio.to_thread(outbox.position) > small.position:
                    break
                await asyncio.sleep(0.05)
        finally:
            relay.stop()
            await asyncio.wait_for(run, 10)
        assert await asyncio.to_thread(outbox.position) > small.position  # the log flowed on
        work = await nc.jetstream().stream_info(WORK_STREAM)
        assert work.state.messages == 1  # the small task's work only
        task = service.load(big.task_id)
        assert task.status is TaskStatus.FAILED
        assert task.error is not None and task.error["type"] == UNPUBLISHABLE
    finally:
        await nc.close()
