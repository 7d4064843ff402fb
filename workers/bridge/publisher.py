"""Publishing a batch of messages to JetStream: all sent at once, then every ack awaited.

nats-py's ``publish_async`` does this one message at a time: a fresh reply token from
``secrets``, an asyncio future, a done-callback and a semaphore slot per message, and
each ack decoded from JSON into a ``PubAck``: a large share of ``serve``'s CPU, as the
relay sends four messages per task. Here one subscription takes the acks of the whole
batch, replies are numbered (``<inbox>.<batch>.<index>``), and an ack is only looked at
for an error; the batch is one future.

A batch succeeds when every message has its ack (a duplicate, dropped by its
``Nats-Msg-Id``, is acked too). It fails with the first error the server answers (no
stream for a subject, a stream refusing the message) or with TimeoutError; acks of a
batch given up on are ignored. The caller publishes the batch again from its position:
JetStream drops the repeats.

Below nats-py, where it lets us (workers/bridge/nats_wire.py, the fast path ``nats_wire``):
the batch's HPUB frames are written as one buffer, and the acks are taken from the
connection's parser straight to this publisher, without nats-py's per-message objects,
queue and task switch (about half the CPU per message). Switched off
(``TASKEXEC_FAST_NATS_WIRE=off``), or where those internals are missing (another
nats-py), or while the connection is not up, the public calls do the same work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

from workers.bridge import nats_wire
from workers.bridge.pool_consumers import PoolConsumers
from workers.protocol import Outgoing
from workers.streams import WORK_ACK_WAIT_S, headers

PUBLISH_TIMEOUT_S = 3.0  # then the batch is published again (JetStream drops repeats)


class _Batch:
    def __init__(self, number: int, size: int) -> None:
        self.number = number
        self.tag = str(number).encode()  # as in the reply subjects
        self.acked = bytearray(size)  # 1 per message acked
        self.missing = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ack(self, index: int) -> None:
        if 0 <= index < len(self.acked) and not self.acked[index]:
            self.acked[index] = 1
            self.missing -= 1
            if self.missing == 0 and not self.done.done():
                self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class JetStreamPublisher:
    """Publishes batches in order on one connection, one batch at a time."""

    def __init__(
        self,
        nc: Client,
        timeout_s: float = PUBLISH_TIMEOUT_S,
        wire: bool = True,
        work_ack_wait_s: float = WORK_ACK_WAIT_S,
    ) -> None:
        self._nc = nc
        self._pools = PoolConsumers(nc.jetstream(), work_ack_wait_s)
        self._timeout_s = timeout_s
        self._inbox = nc.new_inbox()
        self._inbox_bytes = self._inbox.encode()
        self._sub: Subscription | None = None
        self._batch: _Batch | None = None
        self._numbers = 0
        # Frames written and acks taken below nats-py's public calls (see the docstring):
        # when asked (the fast path nats_wire) and this nats-py has what that needs.
        self.wire = wire and nats_wire.available(nc)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message, then wait until each is acked; raise on the first error."""
        if not messages:
            return
        await self._pools.ensure(messages)  # a pool's first work: its consumers, once
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*.*", cb=self._on_ack)
            if self.wire:  # else (or if refused) acks take the callback's way
                nats_wire.tap(self._nc, self._sub, self._on_raw_ack)
        self._numbers += 1
        batch = self._batch = _Batch(self._numbers, len(messages))
        prefix = f"{self._inbox}.{batch.number}."
        try:
            if self.wire and nats_wire.can_write(self._nc, messages):
                await nats_wire.publish_frames(self._nc, prefix, messages)
            else:
                for index, message in enumerate(messages):
                    await self._nc.publish(
                        message.subject,
                        message.body,
                        reply=f"{prefix}{index}",
                        headers={**headers(message.msg_id), **(message.headers or {})},
                    )
            await asyncio.wait_for(asyncio.shield(batch.done), self._timeout_s)
        finally:
            self._batch = None

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    async def close(self) -> None:
        if self._sub is not None:
            nats_wire.untap(self._nc, self._sub)
            await self._sub.unsubscribe()
            self._sub = None

    def _on_raw_ack(self, subject: bytes, data: bytes, raw_headers: bytes | None) -> None:
        """An ack as the parser read it (nats_wire.tap), or as _on_ack passes it on."""
        batch = self._batch
        number, _, index = subject[len(self._inbox_bytes) + 1 :].partition(b".")
        if batch is None or number != batch.tag:
            return  # an ack of a batch given up on
        if raw_headers and raw_headers.startswith(b"NATS/1.0 503"):
            batch.fail(NoStreamResponseError())  # no stream takes this subject
            return
        if b'"error"' in data and _failed(batch, data):
            return
        batch.ack(int(index))

    async def _on_ack(self, msg: Msg) -> None:
        """An ack through nats-py's subscription (where the wire path is not used)."""
        status_503 = msg.headers is not None and msg.headers.get("Status") == "503"
        self._on_raw_ack(msg.subject.encode(), msg.data, b"NATS/1.0 503" if status_503 else None)


def _failed(batch: _Batch, data: bytes) -> bool:
    """Fail ``batch`` if ``data`` (an ack) is JetStream's error answer."""
    error = json.loads(data).get("error")
    if not error:
        return False
    # (nats-py's from_error raises instead of returning the error)
    batch.fail(
        APIError(
            code=error.get("code"),
            description=error.get("description"),
            err_code=error.get("err_code"),
        )
    )
    return True
