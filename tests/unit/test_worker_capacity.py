"""Unit tests of admission by requests (workers/capacity.py): what fits, what is too big,
how work goes back (``nak`` while deliveries remain, else a fresh copy), and how the
worker's ``_begin`` uses it. Stand-ins for NATS; the real path is in
tests/integration/test_capacity.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from tests.fakes import FakeMarkers, FakeMsg, FakeNats
from workers.capacity import Capacity, Ledger
from workers.executor import Worker
from workers.limit_subjects import item_subject
from workers.protocol import WorkItem, encoder, work_decoder, work_identity
from workers.streams import WORK_MAX_DELIVER


def item(task_id: str = "t", cpu: int | None = None, memory: int | None = None) -> WorkItem:
    return WorkItem(
        task_id=task_id,
        attempt=2,
        task_type="AUTOMATED",
        definition_id="d",
        input={"n": 1},
        timeout_ms=1000,
        priority="high",
        handler="nowhere:nothing",
        cpu=cpu,
        memory=memory,
    )


class DeliveredMsg(FakeMsg):
    """A message delivered ``times`` already."""

    def __init__(self, data: bytes, times: int) -> None:
        super().__init__(data)
        self.metadata = SimpleNamespace(num_delivered=times)


class FakeJetStream:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, body, headers))


def ledger(capacity: Capacity) -> tuple[Ledger, FakeJetStream]:
    js = FakeJetStream()
    return Ledger(capacity, js), js  # type: ignore[arg-type]


async def test_requests_are_taken_while_they_fit_and_released_at_the_end() -> None:
    books, _ = ledger(Capacity(millicpu=1000, memory_bytes=100))
    first, second = item("a", cpu=600, memory=50), item("b", cpu=600, memory=10)
    assert await books.admits(FakeMsg(b""), first)  # type: ignore[arg-type]
    busy = FakeMsg(b"")
    assert not await books.admits(busy, second)  # type: ignore[arg-type]
    assert busy.calls == [("nak", 1.0)]  # back for a moment: it fits once ``a`` ends
    books.release(first)
    assert await books.admits(FakeMsg(b""), second)  # type: ignore[arg-type]
    assert (books.cpu_used, books.memory_used) == (600, 10)


async def test_memory_counts_as_much_as_cpu_and_no_request_counts_nothing() -> None:
    books, _ = ledger(Capacity(memory_bytes=100))
    assert await books.admits(FakeMsg(b""), item("a", cpu=10**6, memory=100))  # type: ignore[arg-type]
    assert not await books.admits(FakeMsg(b""), item("b", memory=1))  # type: ignore[arg-type]
    assert await books.admits(FakeMsg(b""), item("c"))  # type: ignore[arg-type]


async def test_an_unlimited_worker_takes_everything_and_counts_nothing() -> None:
    books, _ = ledger(Capacity())
    assert await books.admits(FakeMsg(b""), item(cpu=10**9, memory=10**18))  # type: ignore[arg-type]
    books.release(item(cpu=10**9))
    assert (books.cpu_used, books.memory_used) == (0, 0)


@pytest.mark.parametrize("big", [item(cpu=2001), item(memory=2**30 + 1)])
async def test_work_bigger_than_the_worker_goes_back_for_longer(big: WorkItem) -> None:
    books, _ = ledger(Capacity(millicpu=2000, memory_bytes=2**30, too_big_delay_s=7.0))
    msg = FakeMsg(b"")
    assert not await books.admits(msg, big)  # type: ignore[arg-type]
    assert msg.calls == [("nak", 7.0)]
    assert (books.cpu_used, books.memory_used) == (0, 0)


async def test_at_its_last_deliveries_the_work_goes_back_as_a_fresh_copy() -> None:
    books, js = ledger(Capacity(millicpu=1000, too_big_delay_s=5.0))
    big = item("t", cpu=4000)
    msg = DeliveredMsg(encoder.encode(big), times=WORK_MAX_DELIVER - 1)
    before = datetime.now(UTC)
    assert not await books.admits(msg, big)  # type: ignore[arg-type]

    assert msg.calls == [("ack", None)]  # the old one is done with: the copy is stored
    [(subject, body, headers)] = js.published
    copy = work_decoder.decode(body)
    assert subject == "tasks.work.high"
    assert work_identity(headers["Nats-Msg-Id"]) == ("t", 2)  # the same attempt's work
    assert headers["Nats-Msg-Id"].startswith("t:2:work:deferred-")
    assert copy.not_before is not None
    assert 4.5 < (datetime.fromisoformat(copy.not_before) - before).total_seconds() <= 6
    assert copy.input == big.input and copy.cpu == 4000


async def test_a_pool_s_work_goes_back_to_its_pool() -> None:
    books, js = ledger(Capacity(millicpu=1000))
    work = msgspec.structs.replace(item("t", cpu=4000), executor="gpu")
    msg = DeliveredMsg(encoder.encode(work), times=WORK_MAX_DELIVER - 1)
    assert not await books.admits(msg, work)  # type: ignore[arg-type]
    [(subject, body, _)] = js.published
    assert subject == "tasks.work.gpu.high"
    assert work_decoder.decode(body).executor == "gpu"


async def test_a_limited_definition_s_work_goes_back_to_its_own_queue() -> None:
    books, js = ledger(Capacity(millicpu=1000))
    work = msgspec.structs.replace(item("t", cpu=4000), executor="gpu", max_concurrency=2)
    msg = DeliveredMsg(encoder.encode(work), times=WORK_MAX_DELIVER - 1)
    assert not await books.admits(msg, work)  # type: ignore[arg-type]
    [(subject, _, _)] = js.published
    assert subject == item_subject(work)
    assert subject.startswith("tasks.work.limited.gpu.") and subject.endswith(".high")


async def test_copies_have_ids_of_their_own() -> None:
    books, js = ledger(Capacity(millicpu=1))
    for _ in range(2):
        msg = DeliveredMsg(b"", times=WORK_MAX_DELIVER)
        await books.hand_back(msg, item(cpu=5), 0.1)  # type: ignore[arg-type]
    assert len({headers["Nats-Msg-Id"] for _, _, headers in js.published}) == 2


async def test_the_worker_starts_what_fits_and_hands_back_the_rest() -> None:
    w = Worker(FakeNats(FakeJetStream()), worker_id="w", capacity=Capacity(millicpu=1000))  # type: ignore[arg-type]
    w._markers = FakeMarkers()  # type: ignore[assignment]
    started: list[str] = []
    ended = asyncio.Event()

    async def run(attempt: Any, msg: Any) -> None:
        started.append(attempt.item.task_id)
        await ended.wait()

    w._run = run  # type: ignore[method-assign]
    msgs = [
        FakeMsg(encoder.encode(item(name, cpu=cpu)))
        for name, cpu in [("a", 700), ("b", 700), ("c", 300), ("d", 5000)]
    ]
    await w._begin(msgs)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == ["a", "c"]  # ``b`` waits; ``c``, after it, fits and is not held up
    assert [m.actions for m in msgs] == [[], ["nak"], [], ["nak"]]
    ended.set()
    await asyncio.sleep(0.01)
    assert (w._ledger.cpu_used, w._ledger.memory_used) == (0, 0)  # released at the end


async def test_after_work_went_back_for_want_of_room_the_worker_waits_for_an_end() -> None:
    books, _ = ledger(Capacity(millicpu=1000, busy_delay_s=60.0))
    stopping = asyncio.Event()
    await asyncio.wait_for(books.room(stopping), 10)  # nothing went back: at once

    running = item("a", cpu=1000)
    assert await books.admits(FakeMsg(b""), running)  # type: ignore[arg-type]
    assert not await books.admits(FakeMsg(b""), item("b", cpu=1))  # type: ignore[arg-type]
    waiting = asyncio.create_task(books.room(stopping))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # no pull while the worker is full
    books.release(running)
    await asyncio.wait_for(waiting, 10)  # an attempt ended: room again
    await asyncio.wait_for(books.room(stopping), 10)  # and once only
