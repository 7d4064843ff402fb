"""Which work queue a worker pulls from next.

- Priorities: queues are probed CRITICAL, HIGH, MEDIUM, LOW ("what is there now"). Aging
  keeps LOW from starving: a queue whose oldest waiting item has waited longer than
  ``starvation_s`` (default 60 s) is probed first. With a backlog younger than that, a
  higher priority always starts first.
- A queue found empty is not probed again until work is announced on its subject
  (core NATS, ``tasks.queued.<priority>``: JetStream republishes the headers of each
  work item it stores, a scheduled one that came due included), or a second has passed
  (redeliveries and delayed retries are not announced).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from workers.protocol import PRIORITIES, WORK_STREAM, work_consumer, work_subject
from workers.pull import Puller
from workers.stream_state import StreamState

FULL_PROBE_INTERVAL_S = 1.0
ANNOUNCED_GRACE_S = 0.05  # a queue announced this recently is probed again soon
REPROBE_DELAY_S = 0.002


class QueueProbe:
    """Pulls from the first queue, in priority order, that has work (``probe``)."""

    def __init__(
        self,
        nc: Client,
        js: Any,
        pullers: dict[str, Puller],
        starvation_s: float,
        streams: StreamState,
    ) -> None:
        self._nc = nc
        self._js = js
        self._pullers = pullers  # by priority, started by the worker
        self._starvation_s = starvation_s
        self._streams = streams
        self._aging_checked = 0.0
        self._starving: str | None = None
        self._maybe_work: set[str] = set(PRIORITIES)  # queues that may hold work now
        self._announced: dict[str, float] = {}  # queue -> when new work was last announced
        self._full_probe_at = 0.0

    def announced(self, priority: str) -> None:
        """New work was announced on ``priority``'s subject."""
        self._maybe_work.add(priority)
        self._announced[priority] = time.monotonic()

    async def probe(self, free: int) -> list[Msg]:
        """Pull from the first queue, in priority order, that has work. A queue that was
        found empty is skipped until new work is announced on its subject (each probe is
        a round trip); redeliveries and delayed retries announce nothing, so every queue
        is probed again at least once a second."""
        now = time.monotonic()
        if now >= self._full_probe_at:
            self._full_probe_at = now + FULL_PROBE_INTERVAL_S
            self._maybe_work.update(PRIORITIES)
        for priority in await self.order():
            if priority not in self._maybe_work:
                continue
            self._maybe_work.discard(priority)  # before the pull: a wake-up during it counts
            msgs = await self._pullers[priority].available(free)
            if len(msgs) >= free:  # there may be more
                self._maybe_work.add(priority)
            if msgs:
                return msgs
        return []

    def idle_timeout(self) -> float:
        """How long to sleep when every probe came back empty. The wake-up on the subject
        can arrive before the stream lets the message be pulled: a queue announced in the
        last moments is probed again soon rather than at the next full probe."""
        now = time.monotonic()
        ages = {p: now - at for p, at in self._announced.items() if now - at < ANNOUNCED_GRACE_S}
        if not ages:
            return FULL_PROBE_INTERVAL_S
        self._maybe_work.update(ages)
        # Back off as the announcement ages (2 ms, 4, 8, …): a handful of probes, not a
        # storm, when another worker took the message.
        return max(REPROBE_DELAY_S, min(ages.values()))

    async def order(self) -> list[str]:
        """Strict priority, except that a starving queue goes first (checked each second)."""
        now = time.monotonic()
        if now - self._aging_checked >= 1.0:
            self._aging_checked = now
            # A JetStream API round trip each second: it tells whether the stream answers.
            # Failures are logged once per outage (StreamState), not once per check.
            if not self._nc.is_connected:  # reconnecting: a request would only time out
                self._streams.failed("not connected to NATS")
            else:
                try:
                    self._starving = await self._starving_queue()
                except (TimeoutError, NatsError) as exc:  # no leader or quorum: wait it out
                    self._streams.failed(exc)
                else:
                    self._streams.ok()
        if self._starving is None:
            return list(PRIORITIES)
        self._maybe_work.add(self._starving)
        return [self._starving, *(p for p in PRIORITIES if p != self._starving)]

    async def _starving_queue(self) -> str | None:
        for priority in reversed(PRIORITIES[1:]):  # LOW first: the longest-suffering
            try:
                info = await self._js.consumer_info(WORK_STREAM, work_consumer(priority))
                if not info.num_pending:
                    continue
                oldest = await self._js.get_msg(
                    WORK_STREAM,
                    seq=info.delivered.stream_seq + 1,
                    subject=work_subject(priority),
                    next=True,
                )
            except NotFoundError:
                continue
            stored: datetime | None = oldest.time
            if stored and (datetime.now(UTC) - stored).total_seconds() > self._starvation_s:
                return str(priority)
        return None


async def wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Until either event is set, or ``timeout``."""
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
