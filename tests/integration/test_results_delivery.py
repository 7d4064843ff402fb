"""The results path under every delivery order JetStream can produce, on both databases.

A real nats-server and the real results consumer: a report redelivered after a later one
was recorded, an end report that overtakes its start report, a batch recorded and then
delivered again (a crash between commit and ack), and several consumers (replicas) taking
reports of the same tasks at once. Every report is applied or, if the task truly moved
on, discarded; none is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from nats.aio.client import Client

from commands.catalog import DefinitionCatalog
from commands.messages import SubmitTask
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.values import ANONYMOUS, TaskStatus
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from workers.bridge.results import ResultsConsumer, to_record
from workers.protocol import RESULTS_CONSUMER, RESULTS_STREAM, RESULTS_SUBJECT, Report, encoder
from workers.pull import Puller
from workers.streams import headers

WAIT_S = 15.0


@pytest.fixture
def replica(service: TaskService, database_url: str) -> Iterator[TaskService]:
    """A second service on the same database: another ``serve`` replica's write side."""
    config = DatabaseConfig.from_url(database_url)
    other = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    yield other
    other.close()


def submitted(service: TaskService, count: int = 1) -> list[UUID]:
    cmd = SubmitTask(definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ANONYMOUS)
    return [service.submit(cmd).task_id for _ in range(count)]


def report(
    task_id: UUID, kind: str, attempt: int = 1, worker: str = "w-1", **fields: Any
) -> Report:
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return Report(task_id=str(task_id), attempt=attempt, kind=kind, worker=worker, at=now, **fields)


async def publish(nc: Client, *reports: Report) -> None:
    js = nc.jetstream()
    for one in reports:
        await js.publish(RESULTS_SUBJECT, encoder.encode(one), headers=headers(one.msg_id))


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.05)


async def drained(nc: Client) -> bool:
    info = await nc.jetstream().consumer_info(RESULTS_STREAM, RESULTS_CONSUMER)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def until_drained(nc: Client) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await drained(nc):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("reports still pending or unacked")
        await asyncio.sleep(0.05)


def status(service: TaskService, task_id: UUID) -> TaskStatus:
    return service.load(task_id).status


def event_types(service: TaskService, task_id: UUID) -> list[str]:
    return [type(e).__name__ for e in service.events.get(task_id)]


class Running:
    """Results consumers running in this loop, stopped at the end."""

    def __init__(self) -> None:
        self.consumers: list[tuple[ResultsConsumer, asyncio.Task[None]]] = []

    def start(self, service: TaskService, nc: Client, batch_size: int = 500) -> None:
        consumer = ResultsConsumer(service, nc, batch_size=batch_size)
        self.consumers.append((consumer, asyncio.create_task(consumer.run())))

    async def stop(self) -> None:
        for consumer, _ in self.consumers:
            consumer.stop()
        await asyncio.gather(*(task for _, task in self.consumers))


@pytest.fixture
async def consumers() -> AsyncIterator[Running]:
    running = Running()
    yield running
    await running.stop()


async def test_a_report_redelivered_after_a_later_one_was_recorded_is_applied(
    service: TaskService, nc: Client, consumers: Running
) -> None:
    first, second = submitted(service, 2)
    await publish(nc, report(first, "started"), report(second, "started"))
    holder = Puller(nc, RESULTS_STREAM, RESULTS_CONSUMER)  # a replica that took the first
    await holder.start()
    (held,) = await holder.available(1)

    consumers.start(service, nc)
    await until(lambda: status(service, second) is TaskStatus.RUNNING, "second started")
    await held.nak()  # that replica gives it back: redelivered after a later stream position

    await until(lambda: status(service, first) is TaskStatus.RUNNING, "first started")
    await until_drained(nc)
    await holder.stop()


async def test_an_end_that_overtakes_its_start_report_is_applied(
    service: TaskService, nc: Client, consumers: Running
) -> None:
    (task_id,) = submitted(service)
    # A long attempt reports its start, then its end without the start's moment; the
    # start report is redelivered after the end (a nak, an ack wait that ran out).
    await publish(nc, report(task_id, "started"))
    holder = Puller(nc, RESULTS_STREAM, RESULTS_CONSUMER)
    await holder.start()
    (held,) = await holder.available(1)
    await publish(nc, report(task_id, "completed", output=EXAMPLE_OUTPUT))
    consumers.start(service, nc)

    await until(lambda: status(service, task_id) is TaskStatus.COMPLETED, "completed")
    await held.nak()
    await until_drained(nc)
    await holder.stop()
    assert event_types(service, task_id) == ["Submitted", "Started", "Completed"]
    assert service.load(task_id).output == EXAMPLE_OUTPUT


async def test_reports_recorded_before_a_crash_and_delivered_again_change_nothing(
    service: TaskService, nc: Client, consumers: Running
) -> None:
    done, failed = submitted(service, 2)
    batch = [
        report(done, "completed", output=EXAMPLE_OUTPUT, started_at=report(done, "x").at),
        report(
            failed, "failed", error_type="Boom", retryable=False, started_at="2026-01-01T00:00:00Z"
        ),
    ]
    # Recorded, then the process died before its ack: JetStream delivers the batch again.
    await asyncio.to_thread(service.record_reports, [to_record(one) for one in batch])
    await publish(nc, *batch)
    consumers.start(service, nc)

    await until_drained(nc)
    assert event_types(service, done) == ["Submitted", "Started", "Completed"]
    assert event_types(service, failed) == ["Submitted", "Started", "Failed"]


async def test_a_kept_copy_behind_another_replica_does_not_discard_a_report(
    service: TaskService, replica: TaskService, nc: Client, consumers: Running
) -> None:
    (task_id,) = submitted(service)  # this replica keeps the task as it saved it (PENDING)

    # The other replica records attempt 1's start, its failure (a retry is scheduled) and
    # attempt 2's start, while this one's kept copy still says PENDING.
    await asyncio.to_thread(replica.record_reports, [to_record(report(task_id, "started"))])
    await asyncio.to_thread(
        replica.record_reports,
        [to_record(report(task_id, "failed", error_type="Boom"))],
    )
    assert status(service, task_id) is TaskStatus.PENDING  # what the store holds: a retry due
    await asyncio.to_thread(
        replica.record_reports, [to_record(report(task_id, "started", attempt=2, worker="w-2"))]
    )
    # Attempt 2's end comes to this replica.
    await publish(nc, report(task_id, "completed", attempt=2, worker="w-2", output=EXAMPLE_OUTPUT))
    consumers.start(service, nc)

    await until(lambda: status(service, task_id) is TaskStatus.COMPLETED, "completed")
    await until_drained(nc)
    assert event_types(service, task_id)[-1] == "Completed"


async def test_replicas_consuming_at_once_apply_every_report_exactly_once(
    service: TaskService, replica: TaskService, nc: Client, consumers: Running
) -> None:
    tasks = submitted(service, 60)
    # Each attempt reports its start and end apart (long attempts), every report twice
    # (a worker that published again after a lost ack), shuffled between the two.
    reports: list[Report] = []
    for task_id in tasks:
        reports.append(report(task_id, "started"))
    for task_id in tasks:
        reports.append(report(task_id, "completed", output=EXAMPLE_OUTPUT))
    consumers.start(service, nc, batch_size=7)
    consumers.start(replica, nc, batch_size=5)
    js = nc.jetstream()
    for one in reports:
        await js.publish(RESULTS_SUBJECT, encoder.encode(one), headers=headers(one.msg_id))
    for one in reports[::-1]:  # a second copy of each (another msg id gets it past de-dup)
        again = headers(one.msg_id + ":again")
        await js.publish(RESULTS_SUBJECT, encoder.encode(one), headers=again)

    def completed(task_id: UUID) -> Callable[[], bool]:
        return lambda: status(service, task_id) is TaskStatus.COMPLETED

    for task_id in tasks:
        await until(completed(task_id), f"{task_id} completed")
    await until_drained(nc)
    for task_id in tasks:
        history = event_types(service, task_id)
        assert history == ["Submitted", "Started", "Completed"], (task_id, history)
