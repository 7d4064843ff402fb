"""A limited definition's queues and slots on a real nats-server (workers/limit_subjects.py,
workers/limited_queues.py): the slot consumer hands out at most the limit however many slot
messages exist; a slot handed back is at once another's; one never handed back comes back
after the ack wait; a changed limit is applied in place; the limited subjects are covered
by TASK_WORK and announced; pools' consumers never see them. (End to end with the app and
three workers: tests/integration/test_limits.py.)"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from workers.bridge.backlog import read_backlog
from workers.limit_subjects import (
    SLOTS_STREAM,
    ensure_limit,
    limit_token,
    limited_consumer,
    limited_subject,
    slot_consumer,
    slot_subject,
)
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import WORK_STREAM, work_consumer, work_subject
from workers.pull import Puller
from workers.streams import WORK_MAX_DELIVER, ensure_streams, headers

pytestmark = pytest.mark.asyncio


async def _slot(puller: Puller) -> list[Msg]:
    return await puller.available(1, expires=0.05)


async def test_the_slot_consumer_hands_out_at_most_the_limit(
    nats_server: EmbeddedNatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        token = limit_token("Orders.Sync")
        assert await ensure_limit(js, "standard-executor", "Orders.Sync", 2, 1.0, 5) == 2
        # Made again (another process, a restart), and a stray slot past the limit (a
        # lowered one): still exactly one slot message per place.
        await js.publish(slot_subject(token, 4), b"", headers=headers("stray-slot"))
        assert await ensure_limit(js, "standard-executor", "Orders.Sync", 2, 1.0, 5) == 2
        info = await js.stream_info(SLOTS_STREAM, subjects_filter=slot_subject(token))
        assert info.state.subjects == {slot_subject(token, 0): 1, slot_subject(token, 1): 1}
        slots = Puller(nc, SLOTS_STREAM, slot_consumer(token))
        other = Puller(nc, SLOTS_STREAM, slot_consumer(token))
        await slots.start()
        await other.start()
        try:
            held = [*await _slot(slots), *await _slot(slots)]
            assert len(held) == 2
            assert await _slot(other) == []  # the limit is reached
            await held[0].nak()  # handed back: at once another's
            [again] = await _slot(other)
            assert await _slot(slots) == []
            for msg in (held[1], again):
                await msg.in_progress()  # leases kept: not back while held
            await asyncio.sleep(0.6)
            assert await _slot(slots) == []
            # Never handed back (the holders died): back after the ack wait (1 s here).
            await asyncio.sleep(1.2)
            back = [*await _slot(slots), *await _slot(slots)]
            assert len(back) == 2
            # The limit raised in place: a third slot.
            assert await ensure_limit(js, "standard-executor", "Orders.Sync", 3, 1.0, 5) == 3
            assert len(await _slot(slots)) == 1
            # A retry's old limit (current=False) does not undo it.
            assert await ensure_limit(js, "standard-executor", "Orders.Sync", 2, 1.0, 5, False) == 3
            # Lowered to one: the slots past it are purged; once the leases of those held
            # ran out, one slot is handed out and no more.
            assert await ensure_limit(js, "standard-executor", "Orders.Sync", 1, 1.0, 5) == 1
            info = await js.stream_info(SLOTS_STREAM, subjects_filter=slot_subject(token))
            assert info.state.subjects == {slot_subject(token, 0): 1}
            await asyncio.sleep(1.2)  # the held ones' leases ran out
            assert len(await _slot(slots)) == 1
            assert await _slot(other) == []
        finally:
            await slots.stop()
            await other.stop()
    finally:
        await nc.close()


async def test_limited_work_is_in_task_work_announced_and_not_a_pools(
    nats_server: EmbeddedNatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        token = limit_token("resize")
        await ensure_limit(js, "limited", "resize", 1, 30.0, WORK_MAX_DELIVER)
        announced: list[str] = []

        async def heard(msg: Msg) -> None:
            announced.append(msg.subject)

        await nc.subscribe("tasks.queued.>", cb=heard)
        # A pool called "limited" has queues of its own: never the definition's.
        await js.add_consumer(
            WORK_STREAM,
            name=work_consumer("high", "limited"),
            durable_name=work_consumer("high", "limited"),
            filter_subject="tasks.work.limited.high",
            ack_policy="explicit",
        )
        await js.publish(limited_subject("limited", token, "high"), b"w", headers=headers("w-1"))
        pool = Puller(nc, WORK_STREAM, work_consumer("high", "limited"))
        mine = Puller(nc, WORK_STREAM, limited_consumer("limited", token, "high"))
        await pool.start()
        await mine.start()
        try:
            assert await pool.available(5) == []
            [msg] = await mine.available(5)
            assert msg.data == b"w"
        finally:
            await pool.stop()
            await mine.stop()
        for _ in range(100):
            if announced:
                break
            await asyncio.sleep(0.02)
        assert announced == [f"tasks.queued.limited.limited.{token}.high"]
    finally:
        await nc.close()


async def test_the_backlog_counts_a_limited_definitions_work_with_its_pools(
    nats_server: EmbeddedNatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await ensure_limit(js, "standard-executor", "resize", 1, 30.0, WORK_MAX_DELIVER)
        token = limit_token("resize")
        for n in range(3):
            subject = limited_subject("standard-executor", token, "low")
            await js.publish(subject, b"w", headers=headers(f"limited-{n}"))
        await js.publish(work_subject("low"), b"w", headers=headers("plain"))
        backlog = await read_backlog(js)
        low = backlog.work["standard-executor", "low"]
        assert (low.pending, low.unacked) == (4, 0) and low.oldest_s >= 0
        assert backlog.work["standard-executor", "high"].pending == 0
    finally:
        await nc.close()
