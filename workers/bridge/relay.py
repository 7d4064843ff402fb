"""The relay: the event store's outbox, published to NATS in store order.

At-least-once: a batch is published, then its position is recorded (when caught up,
and at least every half second while not). A crash in between republishes those
batches; ``Nats-Msg-Id`` makes JetStream drop the repeats.
One relay publishes at a time however many ``serve`` replicas run: the others stand by
and take over (from the recorded position) within a second of the active one's end.
The relay never opens the database itself: it is handed an outbox port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from workers import tracing
from workers.protocol import SCHEDULE_SUBJECT_PREFIX, WORK_SUBJECT_PREFIX, Outgoing

WORK_PREFIXES = (WORK_SUBJECT_PREFIX, SCHEDULE_SUBJECT_PREFIX)  # work items, scheduled or not

log = logging.getLogger(__name__)

RECORD_EVERY_S = 0.5  # far inside JetStream's duplicate window
HEADERS_ROOM = 512  # bytes of a message's headers (its Nats-Msg-Id), within max_payload
LEAD_CHECK_S = 1.0  # how often the active relay checks it still is; standbys try as often
PUBLISH_SPAN = "taskexec.relay.publish"


class OutboxBatchLike(Protocol):
    @property
    def last_position(self) -> int: ...
    @property
    def messages(self) -> list[Outgoing]: ...


class OutboxPort(Protocol):
    """What the relay needs of the store (workers/bridge/outbox.py implements it)."""

    def position(self) -> int: ...
    def read(self, after: int, limit: int = 500) -> OutboxBatchLike | None: ...
    def mark_published(self, position: int) -> None: ...
    def lead(self) -> bool:
        """Become or stay the one relay that publishes (False: another replica is)."""
        ...

    def step_down(self) -> None: ...
    def set_aside(self, messages: Sequence[Outgoing], limit: int) -> None:
        """Messages NATS would refuse (too large): never published; their tasks end."""
        ...


class PublisherPort(Protocol):
    """Publishes a batch, returning once JetStream has stored every message (raises
    otherwise): workers.publisher.JetStreamPublisher."""

    async def publish(self, messages: Sequence[Outgoing]) -> None: ...
    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its ``max_payload``)."""
        ...


class Relay:
    """Copies new store events to NATS until stopped."""

    def __init__(
        self, outbox: OutboxPort, publisher: PublisherPort, poll_interval: float = 0.05
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._position = 0  # published up to here
        self._recorded = 0  # recorded in the store up to here
        self._recorded_at = time.monotonic()

    def poke(self) -> None:
        """Thread-safe: new events were recorded."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            if await self._lead():
                await self._publish_while_leading()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), LEAD_CHECK_S)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._outbox.step_down)

    async def _lead(self) -> bool:
        try:
            return await asyncio.to_thread(self._outbox.lead)
        except Exception:
            log.exception("relay: cannot tell whether this replica leads")
            return False

    async def _publish_while_leading(self) -> None:
        self._position = self._recorded = await asyncio.to_thread(self._outbox.position)
        checked_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                await self._step()
            except Exception:
                log.exception("relay: publishing failed; retrying from %d", self._position)
                await asyncio.sleep(1.0)
            if time.monotonic() - checked_at >= LEAD_CHECK_S:
                if not await self._lead():
                    log.warning("relay: no longer the active relay; standing by")
                    return
                checked_at = time.monotonic()
        with contextlib.suppress(Exception):
            await self._record()

    async def _step(self) -> None:
        """Publish the next batch. The position is recorded when the log has been caught
        up for a poll interval, and at least every RECORD_EVERY_S while it is not: not a
        database round trip per batch. A crash republishes what was published since, and
        JetStream drops those as duplicates (Nats-Msg-Id, within its 120 s window)."""
        self._wake.clear()
        batch = await asyncio.to_thread(self._outbox.read, self._position)
        if batch is None:
            # Caught up: the position is recorded once nothing new came for a poll
            # interval, not at once: a task's next event (its start, its end) often
            # follows within milliseconds, and should not wait behind that write.
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                await self._record()
            else:
                if time.monotonic() - self._recorded_at >= RECORD_EVERY_S:
                    await self._record()
            return
        # One event must never block the log: what NATS cannot take is set aside.
        messages = batch.messages
        limit = self._publisher.max_payload - HEADERS_ROOM
        if any(len(message.body) > limit for message in messages):
            await asyncio.to_thread(
                self._outbox.set_aside, [m for m in messages if len(m.body) > limit], limit
            )
            messages = [m for m in messages if len(m.body) <= limit]
        # The whole batch pipelined, then every ack (one round trip per batch); one
        # connection keeps the order within each stream.
        started = time.time_ns()
        await self._publisher.publish(messages)
        if tracing.active():
            publish_spans(messages, started)
        self._position = batch.last_position
        if time.monotonic() - self._recorded_at >= RECORD_EVERY_S:
            await self._record()

    async def _record(self) -> None:
        if self._position > self._recorded:
            await asyncio.to_thread(self._outbox.mark_published, self._position)
            self._recorded = self._position
        self._recorded_at = time.monotonic()


def publish_spans(messages: Sequence[Outgoing], started: int) -> None:
    """A ``taskexec.relay.publish`` span for each work item of a task with a trace context,
    under it: the batch's publish, from its first send to JetStream's last ack. Lifecycle
    events get none: they carry the task's context themselves, and a span for each would
    double what tracing costs a task (docs/benchmarks.md)."""
    ended = time.time_ns()
    for message in messages:
        if message.trace and message.subject.startswith(WORK_PREFIXES):
            attributes = {
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.subject,
                "messaging.message.id": message.msg_id,
                "messaging.batch.message_count": len(messages),
            }
            tracing.record(PUBLISH_SPAN, "producer", message.trace, started, ended, attributes)
