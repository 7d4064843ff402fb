"""The order a worker of several executor pools probes its queues in
(workers/queue_probe.py): priority first; at each priority the pools take turns going
first; a starving queue of any pool goes before all."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.errors import NotFoundError

from tests.fakes import FakeNats
from workers.protocol import PRIORITIES, work_consumer, work_subject
from workers.queue_probe import Queue, QueueProbe
from workers.stream_state import StreamState


class AgingJetStream:
    """``waiting``: queue -> the age (s) of its oldest pending item; other queues have
    nothing pending. Consumers are made without a word."""

    def __init__(self, waiting: dict[Queue, float]) -> None:
        self.consumers = {work_consumer(p, pool): age for (pool, p), age in waiting.items()}
        self.subjects = {work_subject(p, pool): age for (pool, p), age in waiting.items()}

    async def add_consumer(self, stream: str, config: Any) -> None:
        return None

    async def consumers_info(self, stream: str, offset: int | None = None) -> list[Any]:
        return []  # no limited definition's queues

    async def consumer_info(self, stream: str, consumer: str) -> Any:
        delivered = type("Delivered", (), {"stream_seq": 0})()
        pending = int(consumer in self.consumers)
        return type("Info", (), {"num_pending": pending, "delivered": delivered})()

    async def get_msg(self, stream: str, seq: int, subject: str, next: bool) -> Any:
        if subject not in self.subjects:
            raise NotFoundError
        stored = datetime.now(UTC) - timedelta(seconds=self.subjects[subject])
        return type("Msg", (), {"time": stored})()


async def probe_of(pools: list[str], waiting: dict[Queue, float] | None = None) -> QueueProbe:
    nc: Any = FakeNats(AgingJetStream(waiting or {}))
    probe = QueueProbe(nc, nc.js, 60.0, StreamState("test", logging.getLogger("test")))
    await probe.join(pools, 30.0)
    return probe


async def test_one_pool_is_strict_priority_order() -> None:
    probe = await probe_of(["standard-executor"])
    assert await probe.order() == [("standard-executor", p) for p in PRIORITIES]


async def test_pools_take_turns_at_each_priority() -> None:
    probe = await probe_of(["a", "b", "c"])
    firsts = []
    for _ in range(6):
        order = await probe.order()
        assert [p for _, p in order] == [p for p in PRIORITIES for _ in range(3)]
        assert {pool for pool, _ in order[:3]} == {"a", "b", "c"}
        firsts.append(order[0][0])
    assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]  # each goes first as often


async def test_a_starving_queue_of_any_pool_goes_first() -> None:
    probe = await probe_of(["a", "b"], {("b", "low"): 90.0, ("a", "high"): 5.0})
    order = await probe.order()
    assert order[0] == ("b", "low")  # waited past starvation_s (60 s): before a's CRITICAL
    assert sorted(order[1:3]) == [("a", "critical"), ("b", "critical")]
    assert ("a", "high") in order[3:5]  # 5 s old: no more than its priority
    assert len(order) == len(set(order)) == 8
