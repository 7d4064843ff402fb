"""Which work queue a worker pulls from next.

A queue is one executor pool's work of one priority (workers/protocol.py); a worker
pulls from its pools' queues only.

- Priorities: queues are probed CRITICAL, HIGH, MEDIUM, LOW ("what is there now"). Aging
  keeps LOW from starving: a queue whose oldest waiting item has waited longer than
  ``starvation_s`` (default 60 s) is probed first. With a backlog younger than that, a
  higher priority always starts first. Both hold within each pool.
- Pools: at each priority, the worker's pools take turns going first (a round robin from
  one probe to the next), so one pool's backlog does not keep another's work of the same
  priority waiting; a starving queue of any pool goes before all.
- Limited definitions (``executionConfig.maxConcurrency``): their work has queues of its
  own, taken only with a slot (workers/limited_queues.py), probed at each priority after
  the pools' queues of that priority.
- A queue found empty is not probed again until work is announced on its subject
  (core NATS, ``tasks.queued.[<pool>.]<priority>``: JetStream republishes the headers of
  each work item it stores, a scheduled one that came due included), or a second has
  passed (redeliveries and delayed retries are not announced).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from domain.executor_pool import DEFAULT_POOL
from workers.limited_queues import LimitedQueues
from workers.protocol import (
    PRIORITIES,
    WORK_STREAM,
    announced_queue,
    queued_subject,
    work_consumer,
    work_subject,
)
from workers.pull import Puller
from workers.stream_state import StreamState
from workers.streams import ensure_pool_consumers

FULL_PROBE_INTERVAL_S = 1.0
ANNOUNCED_GRACE_S = 0.05  # a queue announced this recently is probed again soon
REPROBE_DELAY_S = 0.002

Queue = tuple[str, str]  # (pool, priority)


class QueueProbe:
    """Pulls from the first queue, in priority order, that has work (``probe``)."""

    def __init__(
        self,
        nc: Client,
        js: Any,
        starvation_s: float,
        streams: StreamState,
    ) -> None:
        self._nc = nc
        self._js = js
        self._pullers: dict[Queue, Puller] = {}  # by queue
        self._starvation_s = starvation_s
        self._streams = streams
        self._pools: list[str] = []  # in the order they were added
        self._turn = 0  # which pool goes first at each priority (round robin)
        self._aging_checked = 0.0
        self._starving: list[Queue] = []
        self._maybe_work: set[Queue] = set()  # queues that may hold work now
        self._announced: dict[Queue, float] = {}  # queue -> when new work was last announced
        self._full_probe_at = 0.0
        self._limited = LimitedQueues(nc, js, starvation_s)

    async def join(self, pools: Iterable[str], ack_wait_s: float) -> list[str]:
        """Take ``pools``' work too: their consumers made if missing (idempotent), a puller
        for each of their queues; the pools that were new."""
        new = [pool for pool in dict.fromkeys(pools) if pool not in self._pools]
        await ensure_pool_consumers(self._js, [p for p in new if p != DEFAULT_POOL], ack_wait_s)
        for pool in new:
            for priority in PRIORITIES:
                puller = Puller(self._nc, WORK_STREAM, work_consumer(priority, pool))
                await puller.start()
                self._pullers[pool, priority] = puller
            self._pools.append(pool)
            self._maybe_work.update((pool, priority) for priority in PRIORITIES)
        await self._limited.join(new)
        return new

    async def listen(self, wake: asyncio.Event) -> list[Subscription]:
        """Announcements of new work of this worker's pools (each stored work item's
        headers, scheduled ones too: workers/streams.py), one subscription per pool, so
        other pools' traffic never reaches it: each marks its queue and sets ``wake``.
        The subscriptions are the caller's to end."""

        async def announced(msg: Msg) -> None:
            queue = announced_queue(msg.subject)
            if queue is not None and queue[0] in self._pools:
                self.announced(queue)
                wake.set()

        return [
            *[
                await self._nc.subscribe(queued_subject("*", pool), cb=announced)
                for pool in self._pools
            ],
            *await self._limited.listen(self._pools, wake),
        ]

    async def close(self) -> None:
        """Stop every puller."""
        for puller in self._pullers.values():
            await puller.stop()
        await self._limited.close()

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(self._pools)

    def announced(self, queue: Queue) -> None:
        """New work was announced on ``queue``'s subject (another pool's: ignored)."""
        if queue[0] in self._pools:
            self._maybe_work.add(queue)
            self._announced[queue] = time.monotonic()

    async def probe(self, free: int) -> list[Msg]:
        """Pull from the first queue, in priority order, that has work. A queue that was
        found empty is skipped until new work is announced on its subject (each probe is
        a round trip); redeliveries and delayed retries announce nothing, so every queue
        is probed again at least once a second."""
        now = time.monotonic()
        if now >= self._full_probe_at:
            self._full_probe_at = now + FULL_PROBE_INTERVAL_S
            self._maybe_work.update(self._all_queues())
            self._limited.mark_all()
            await self._limited.refresh()
        for queue in await self.order():
            if queue in self._maybe_work:
                self._maybe_work.discard(queue)  # before the pull: a wake-up during it counts
                msgs = await self._pullers[queue].available(free)
                if len(msgs) >= free:  # there may be more
                    self._maybe_work.add(queue)
                if msgs:
                    return msgs
            msgs = await self._limited.probe(*queue, free)  # with their slots
            if msgs:
                return msgs
        return []

    def idle_timeout(self) -> float:
        """How long to sleep when every probe came back empty. The wake-up on the subject
        can arrive before the stream lets the message be pulled: a queue announced in the
        last moments is probed again soon rather than at the next full probe."""
        now = time.monotonic()
        ages = {q: now - at for q, at in self._announced.items() if now - at < ANNOUNCED_GRACE_S}
        if not ages:
            return FULL_PROBE_INTERVAL_S
        self._maybe_work.update(ages)
        # Back off as the announcement ages (2 ms, 4, 8, …): a handful of probes, not a
        # storm, when another worker took the message.
        return max(REPROBE_DELAY_S, min(ages.values()))

    async def order(self) -> list[Queue]:
        """Priority order, the pools taking turns at each priority, except that starving
        queues go first (checked each second)."""
        now = time.monotonic()
        if now - self._aging_checked >= 1.0:
            self._aging_checked = now
            # A JetStream API round trip each second: it tells whether the stream answers.
            # Failures are logged once per outage (StreamState), not once per check.
            if not self._nc.is_connected:  # reconnecting: a request would only time out
                self._streams.failed("not connected to NATS")
            else:
                try:
                    self._starving = await self._starving_queues()
                except (TimeoutError, NatsError) as exc:  # no leader or quorum: wait it out
                    self._streams.failed(exc)
                else:
                    self._streams.ok()
        queues = self._all_queues(rotate=True)
        if not self._starving:
            return queues
        self._maybe_work.update(self._starving)
        return [*self._starving, *(q for q in queues if q not in self._starving)]

    def _all_queues(self, rotate: bool = False) -> list[Queue]:
        pools = self._pools
        if rotate and len(pools) > 1:
            self._turn = (self._turn + 1) % len(pools)
            pools = pools[self._turn :] + pools[: self._turn]
        return [(pool, priority) for priority in PRIORITIES for pool in pools]

    async def _starving_queues(self) -> list[Queue]:
        """Each pool's longest-suffering starving queue, if it has one."""
        starving: list[Queue] = []
        for pool in self._pools:
            for priority in reversed(PRIORITIES[1:]):  # LOW first: the longest-suffering
                if await self._starves(pool, priority):
                    starving.append((pool, priority))
                    break
        return starving

    async def _starves(self, pool: str, priority: str) -> bool:
        try:
            info = await self._js.consumer_info(WORK_STREAM, work_consumer(priority, pool))
            if not info.num_pending:
                return False
            oldest = await self._js.get_msg(
                WORK_STREAM,
                seq=info.delivered.stream_seq + 1,
                subject=work_subject(priority, pool),
                next=True,
            )
        except NotFoundError:
            return False
        stored: datetime | None = oldest.time
        return bool(stored and (datetime.now(UTC) - stored).total_seconds() > self._starvation_s)


async def wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Until either event is set, or ``timeout``."""
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
