"""A worker's side of concurrency limits: taking a limited definition's work only with one
of its slots in hand (workers/limit_subjects.py; docs/execution.md, "Concurrency limits").

- **Which definitions**: those of the worker's pools whose queues exist when it joins (a
  listing of TASK_WORK's consumers), and any whose work is announced later
  (``tasks.queued.limited.<pool>.*.*``).
- **Taking work**: a slot first (pulls of one from the definition's slot consumer, up to
  ``free``: JetStream hands out at most its limit), then as much of its work as
  slots were got, by priority, with aging (a queue whose oldest item waited longer than
  ``starvation_s`` goes first); slots left over go back at once. Each work message comes
  paired with its slot (``SlotMsg``): acking, handing back or terminating the work hands
  the slot back (``nak``: at once another worker's) and announces it on
  ``tasks.freed.<pool>.<token>``; ``in_progress`` keeps both leases. A worker that dies
  does neither: the slot comes back after the ack wait, as its work does.
- **Waiting without blocking**: no slot, or no work: the definition is not looked at again
  until its work or a freed slot is announced, or the next full probe (each second);
  meanwhile the worker takes other work. No extra round trip for unlimited work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from workers.limit_subjects import (
    FREED_PREFIX,
    SLOTS_STREAM,
    announced_limited,
    freed_subject,
    limited_consumer,
    limited_queue,
    limited_subject,
    slot_consumer,
)
from workers.protocol import PRIORITIES, WORK_STREAM
from workers.pull import Puller

log = logging.getLogger(__name__)

Limited = tuple[str, str]  # (pool, token)
# A slot pull ends at once when every slot is out; only while a lowered limit leaves extra
# slot messages behind can it wait, and then no longer than this.
SLOT_PULL_EXPIRES_S = 0.05
RELIST_S = 30.0  # how often the worker lists TASK_WORK's consumers for limited definitions


@dataclass
class SlotMsg(Msg):
    """A limited definition's work message and the slot its attempt holds."""

    slot: Msg | None = None
    freed: Callable[[], Awaitable[None]] | None = None

    async def ack(self) -> None:
        await super().ack()
        await self._release()

    async def nak(self, delay: int | float | None = None) -> None:
        await super().nak(delay)
        await self._release()

    async def term(self) -> None:
        await super().term()
        await self._release()

    async def in_progress(self) -> None:
        await super().in_progress()
        if self.slot is not None:
            await self.slot.in_progress()

    async def _release(self) -> None:
        """The slot back (once): another worker may take it at once, and is told."""
        slot, self.slot = self.slot, None
        if slot is None:
            return
        try:
            await slot.nak()
            if self.freed is not None:
                await self.freed()
        except Exception as exc:  # not connected: the slot comes back after its ack wait
            log.warning("slot not handed back (%r): back after the ack wait", exc)


async def _slots(puller: Puller, wanted: int) -> list[Msg]:
    """Up to ``wanted`` slots, one pull each: a pull of several that the limit cuts short
    is left waiting by the server until it expires, while a pull of one is answered at
    once when every slot is out."""
    slots: list[Msg] = []
    while len(slots) < wanted:
        slot = await puller.available(1, expires=SLOT_PULL_EXPIRES_S)
        if not slot:
            break
        slots.extend(slot)
    return slots


def paired(msg: Msg, slot: Msg, freed: Callable[[], Awaitable[None]]) -> SlotMsg:
    """``msg`` holding ``slot``."""
    return SlotMsg(
        _client=msg._client,
        subject=msg.subject,
        reply=msg.reply,
        data=msg.data,
        headers=msg.headers,
        _metadata=msg._metadata,
        _sid=msg._sid,
        slot=slot,
        freed=freed,
    )


@dataclass
class _Definition:
    """One limited definition in one pool: its slot puller and a puller per priority."""

    pool: str
    token: str
    slots: Puller
    work: dict[str, Puller]
    starving: list[str] = field(default_factory=list)
    aging_checked: float = 0.0


class LimitedQueues:
    """The limited definitions of a worker's pools, and taking their work with slots."""

    def __init__(self, nc: Client, js: Any, starvation_s: float) -> None:
        self._nc = nc
        self._js = js
        self._starvation_s = starvation_s
        self._pools: set[str] = set()
        self._definitions: dict[Limited, _Definition] = {}
        self._maybe: dict[Limited, set[str]] = {}  # priorities that may hold work now
        self._listed_at: float | None = None  # the last listing of the queues (monotonic)

    async def join(self, pools: Iterable[str]) -> None:
        """Take the limited work of ``pools`` too: the definitions whose queues exist."""
        self._pools.update(pools)
        self._listed_at = None
        await self.refresh()

    async def refresh(self) -> None:
        """Look for limited definitions whose queues exist (work stored before this worker
        started announced nothing to it): at the start, then every ``RELIST_S`` at the full
        probe; a listing that fails (JetStream unavailable) is tried again at the next."""
        now = time.monotonic()
        if self._listed_at is not None and now - self._listed_at < RELIST_S:
            return
        try:
            subjects = await self._filters()
        except Exception as exc:  # unavailable: the next full probe tries again
            log.debug("limited definitions not listed: %r", exc)
            return
        self._listed_at = now
        for subject in subjects:
            queue = limited_queue(subject)
            if queue is not None and queue[0] in self._pools:
                await self._add((queue[0], queue[1]))
        self.mark_all()

    async def listen(self, pools: Iterable[str], wake: asyncio.Event) -> list[Subscription]:
        """Announcements of limited work and of freed slots in ``pools``: each marks its
        definition and sets ``wake``. The subscriptions are the caller's to end."""

        async def announced(msg: Msg) -> None:
            queue = limited_queue(msg.subject)
            if queue is not None and queue[0] in self._pools:
                await self._add((queue[0], queue[1]))
                self._maybe.setdefault((queue[0], queue[1]), set()).add(queue[2])
                wake.set()

        async def freed(msg: Msg) -> None:
            pool, _, token = msg.subject[len(FREED_PREFIX) :].partition(".")
            if (pool, token) in self._definitions:
                self._maybe[pool, token] = set(PRIORITIES)
                wake.set()

        subscriptions = []
        for pool in pools:
            subscriptions.append(await self._nc.subscribe(announced_limited(pool), cb=announced))
            subscriptions.append(await self._nc.subscribe(f"{FREED_PREFIX}{pool}.*", cb=freed))
        return subscriptions

    def mark_all(self) -> None:
        """Every known definition may have work (the full probe: redeliveries and delayed
        retries are not announced)."""
        for key in self._definitions:
            self._maybe[key] = set(PRIORITIES)

    async def probe(self, pool: str, priority: str, free: int) -> list[Msg]:
        """Work of the first of ``pool``'s limited definitions that may have work of
        ``priority`` and has a slot free, each message holding its slot; else []."""
        for key in [k for k, priorities in self._maybe.items() if k[0] == pool]:
            if priority in self._maybe.get(key, ()):
                msgs = await self._take(self._definitions[key], free)
                if msgs:
                    return msgs
        return []

    async def close(self) -> None:
        for definition in self._definitions.values():
            await definition.slots.stop()
            for puller in definition.work.values():
                await puller.stop()

    async def _take(self, definition: _Definition, free: int) -> list[Msg]:
        key = (definition.pool, definition.token)
        slots = await _slots(definition.slots, free)
        msgs: list[Msg] = []
        if slots:
            for priority in await self._order(definition):
                if len(msgs) < len(slots):
                    msgs.extend(await definition.work[priority].available(len(slots) - len(msgs)))
        for slot in slots[len(msgs) :]:  # no work for them: back at once, unannounced
            with contextlib.suppress(Exception):
                await slot.nak()
        if len(slots) < free or len(msgs) < len(slots):  # no slot left, or no work left
            self._maybe.pop(key, None)

        async def freed() -> None:
            await self._nc.publish(freed_subject(*key))

        return [paired(msg, slot, freed) for msg, slot in zip(msgs, slots, strict=False)]

    async def _order(self, definition: _Definition) -> list[str]:
        """Priority order, a starving queue first (checked once a second)."""
        now = time.monotonic()
        if now - definition.aging_checked >= 1.0:
            definition.aging_checked = now
            definition.starving = []
            for priority in reversed(PRIORITIES[1:]):  # LOW first: the longest-suffering
                if await self._starves(definition, priority):
                    definition.starving = [priority]
                    break
        rest = [p for p in PRIORITIES if p not in definition.starving]
        return [*definition.starving, *rest]

    async def _starves(self, definition: _Definition, priority: str) -> bool:
        pool, token = definition.pool, definition.token
        try:
            info = await self._js.consumer_info(
                WORK_STREAM, limited_consumer(pool, token, priority)
            )
            if not info.num_pending:
                return False
            oldest = await self._js.get_msg(
                WORK_STREAM,
                seq=info.delivered.stream_seq + 1,
                subject=limited_subject(pool, token, priority),
                next=True,
            )
        except NotFoundError:
            return False
        stored: datetime | None = oldest.time
        return bool(stored and (datetime.now(UTC) - stored).total_seconds() > self._starvation_s)

    async def _add(self, key: Limited) -> None:
        """Pullers for a limited definition met for the first time."""
        if key in self._definitions:
            return
        pool, token = key
        slots = Puller(self._nc, SLOTS_STREAM, slot_consumer(token))
        work = {
            p: Puller(self._nc, WORK_STREAM, limited_consumer(pool, token, p)) for p in PRIORITIES
        }
        for puller in (slots, *work.values()):
            await puller.start()
        self._definitions[key] = _Definition(pool, token, slots, work)
        log.info("limited definition %s of pool %s: taken up", token, pool)

    async def _filters(self) -> list[str]:
        """The filter subjects of TASK_WORK's consumers (every page of the listing)."""
        found: list[Any] = []
        while True:
            page = await self._js.consumers_info(WORK_STREAM, offset=len(found) or None)
            found.extend(page)
            if len(page) < 256:
                return [info.config.filter_subject or "" for info in found]
