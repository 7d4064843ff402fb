"""Admission by requests: a worker started with ``--cpus N --memory Q`` runs an attempt only
while the requests (``resourceRequirements.cpu`` and ``memory``) of the attempts it runs,
plus this one's, fit in them. Unset: no check (each attempt takes a slot, as before).

Work that does not fit goes back to its queue, never held: ``nak`` with a delay
(``busy_delay_s`` while it would fit once running attempts end; ``too_big_delay_s`` when
it needs more than the whole worker has: another, bigger worker may take it). It stays
PENDING; nothing is lost and it never runs here. A ``nak`` counts as a delivery, and a
work message has a few (``WORK_MAX_DELIVER``); at its last but one the worker publishes a
fresh copy of the work instead (its own ``Nats-Msg-Id``, due after the delay) and acks the
old one, so waiting never uses them up. Meanwhile work that fits runs, even of a lower
priority: a big attempt waits while the capacity is in use by smaller ones. After a batch
in which work went back for want of room, the worker pulls again only once an attempt
ended (or ``busy_delay_s`` passed): a full worker does not churn through the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from workers.limit_subjects import item_subject
from workers.protocol import WorkItem, encoder, work_msg_id
from workers.queue_probe import wait_any
from workers.streams import WORK_MAX_DELIVER

log = logging.getLogger("workers.executor")  # the worker's logger


@dataclass(frozen=True)
class Capacity:
    """What a worker offers: millicores and bytes (None: not limited); how long work it
    hands back stays away."""

    millicpu: int | None = None
    memory_bytes: int | None = None
    busy_delay_s: float = 1.0
    too_big_delay_s: float = 5.0

    @property
    def limited(self) -> bool:
        return self.millicpu is not None or self.memory_bytes is not None

    def describe(self) -> str:
        cpu = f"{self.millicpu}m cpu" if self.millicpu is not None else "any cpu"
        memory = f"{self.memory_bytes} bytes" if self.memory_bytes is not None else "any memory"
        return f"{cpu}, {memory}"


class Ledger:
    """The requests of the attempts a worker runs, against its capacity."""

    def __init__(self, capacity: Capacity, js: JetStreamContext) -> None:
        self.capacity = capacity
        self._js = js
        self.cpu_used = 0
        self.memory_used = 0
        self._short = False  # work went back for want of room since the last ``room``
        self._freed = asyncio.Event()

    def too_big(self, item: WorkItem) -> bool:
        """Does ``item`` need more than the whole worker has?"""
        cpu, memory = self.capacity.millicpu, self.capacity.memory_bytes
        return (cpu is not None and (item.cpu or 0) > cpu) or (
            memory is not None and (item.memory or 0) > memory
        )

    def fits(self, item: WorkItem) -> bool:
        """Does ``item`` fit beside the attempts running now?"""
        cpu, memory = self.capacity.millicpu, self.capacity.memory_bytes
        return (cpu is None or self.cpu_used + (item.cpu or 0) <= cpu) and (
            memory is None or self.memory_used + (item.memory or 0) <= memory
        )

    async def admits(self, msg: Msg, item: WorkItem) -> bool:
        """True: ``item`` may start now, and its requests are taken (``release`` them
        when it ends). False: its work was handed back."""
        if not self.capacity.limited:
            return True
        if self.too_big(item):
            log.warning(
                "attempt %d of %s needs more than this worker has (%s): handed back",
                item.attempt,
                item.task_id,
                self.capacity.describe(),
            )
            await self.hand_back(msg, item, self.capacity.too_big_delay_s)
            return False
        if not self.fits(item):
            self._short = True
            await self.hand_back(msg, item, self.capacity.busy_delay_s)
            return False
        self.cpu_used += item.cpu or 0
        self.memory_used += item.memory or 0
        return True

    def release(self, item: WorkItem) -> None:
        """``item``'s attempt ended: its requests are free again."""
        if self.capacity.limited:
            self.cpu_used -= item.cpu or 0
            self.memory_used -= item.memory or 0
            self._freed.set()

    async def room(self, stopping: asyncio.Event) -> None:
        """If work went back for want of room: wait until an attempt ends (or
        ``busy_delay_s``), so that the next pull may find some. Else at once."""
        if not self._short:
            return
        self._short = False
        self._freed.clear()
        await wait_any(self._freed, stopping, timeout=self.capacity.busy_delay_s)

    async def hand_back(self, msg: Msg, item: WorkItem, delay_s: float) -> None:
        """Back to the queue for ``delay_s``: a ``nak``, or a fresh copy when the message
        has deliveries for little more than a crash of its attempt."""
        with contextlib.suppress(Exception):
            if _delivered(msg) < WORK_MAX_DELIVER - 1:
                await msg.nak(delay=delay_s)
                return
            due = (datetime.now(UTC) + timedelta(seconds=delay_s)).isoformat()
            copy = msgspec.structs.replace(item, not_before=due)
            again = f"deferred-{uuid.uuid4().hex[:12]}"
            msg_id = work_msg_id(item.task_id, item.attempt, again, item.requeued)
            await self._js.publish(
                item_subject(item),  # its pool's queue, or its limited definition's
                encoder.encode(copy),
                headers={"Nats-Msg-Id": msg_id},
            )
            await msg.ack()  # only once the copy is stored: never lost, at worst twice


def _delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message: as if delivered once
        return 1
