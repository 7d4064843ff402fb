"""Several ``serve`` replicas' relays on one database and one NATS: one publishes, the
others stand by and take over when it goes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from nats.aio.client import Client

from commands.catalog import DefinitionCatalog
from commands.leadership import FileLock, leadership
from commands.messages import SubmitTask
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.values import ANONYMOUS
from tests.conftest import EXAMPLE_INPUT
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.protocol import EVENTS_STREAM, WORK_STREAM, Outgoing

WAIT_S = 15.0


class Counting:
    """A real publisher that counts what it was handed."""

    def __init__(self, nc: Client) -> None:
        self._inner = JetStreamPublisher(nc)
        self.published = 0

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        await self._inner.publish(messages)
        self.published += len(messages)

    @property
    def max_payload(self) -> int:
        return self._inner.max_payload


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.05)


async def stream_messages(nc: Client, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.state.messages)


def submit(service: TaskService, count: int) -> None:
    cmd = SubmitTask(definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ANONYMOUS)
    service.submit_many([cmd] * count)


async def test_one_relay_publishes_and_a_standby_takes_over_when_it_stops(
    service: TaskService, database_url: str, nc: Client
) -> None:
    config = DatabaseConfig.from_url(database_url)
    other = TaskService(config.eventsourcing_env(pool_size=2), DefinitionCatalog.load())
    publishers = [Counting(nc), Counting(nc)]
    relays = [
        Relay(Outbox(svc, leadership(config, "relay")), publisher, poll_interval=0.02)
        for svc, publisher in zip([service, other], publishers, strict=True)
    ]
    runs = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await asyncio.to_thread(submit, service, 20)
        await asyncio.to_thread(submit, other, 20)
        # Each submit makes two messages: its event and its work.
        await until(lambda: sum(p.published for p in publishers) >= 80, "40 tasks published")
        await asyncio.sleep(0.5)  # a second relay publishing would show by now
        assert sorted(p.published for p in publishers) == [0, 80]
        assert await stream_messages(nc, EVENTS_STREAM) == 40
        assert await stream_messages(nc, WORK_STREAM) == 40

        active = 0 if publishers[0].published else 1
        relays[active].stop()
        await asyncio.wait_for(runs[active], 5)
        await asyncio.to_thread(submit, service, 10)
        standby = publishers[1 - active]
        await until(lambda: standby.published >= 20, "the standby took over")
        assert await stream_messages(nc, EVENTS_STREAM) == 50
        assert await stream_messages(nc, WORK_STREAM) == 50
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.gather(*runs)
        other.close()


def test_a_file_lock_has_one_holder_until_it_is_released(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "x.lock", "relay"), FileLock(tmp_path / "x.lock", "relay")
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    first.release()
    assert second.acquire() and second.check()
    second.release()


def test_an_advisory_lock_has_one_holder_and_is_freed_with_its_connection(
    postgres_url: str,
) -> None:
    config = DatabaseConfig.from_url(postgres_url)
    first, second = leadership(config, "relay"), leadership(config, "relay")
    try:
        assert first.acquire() and first.check()
        assert not second.acquire()
        first.release()  # the connection closes: as when the process dies
        assert second.acquire() and second.check()
        assert not first.acquire()
    finally:
        first.release()
        second.release()
