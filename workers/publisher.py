"""Publishing a batch of messages to JetStream: all sent at once, then every ack awaited.

nats-py's ``publish_async`` does this one message at a time: a fresh reply token from
``secrets``, an asyncio future, a done-callback and a semaphore slot per message, and
each ack decoded from JSON into a ``PubAck``. The relay sends four messages per task, so
that was a tenth of ``serve``'s CPU under load (bench profile). Here one subscription
takes the acks of the whole batch, replies are numbered (``<inbox>.<batch>.<index>``),
and an ack is only looked at for an error; the batch is one future.

A batch succeeds when every message has its ack (a duplicate, dropped by its
``Nats-Msg-Id``, is acked too). It fails with the first error the server answers (no
stream for a subject, a stream refusing the message) or with TimeoutError; acks of a
batch given up on are ignored. The caller publishes the batch again from its position:
JetStream drops the repeats.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

from workers.protocol import Outgoing
from workers.streams import headers

PUBLISH_TIMEOUT_S = 10.0


class _Batch:
    def __init__(self, number: int, size: int) -> None:
        self.number = number
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

    def __init__(self, nc: Client, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._batch: _Batch | None = None
        self._numbers = 0

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message, then wait until each is acked; raise on the first error."""
        if not messages:
            return
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*.*", cb=self._on_ack)
        self._numbers += 1
        batch = self._batch = _Batch(self._numbers, len(messages))
        prefix = f"{self._inbox}.{batch.number}."
        try:
            for index, message in enumerate(messages):
                await self._nc.publish(
                    message.subject,
                    message.body,
                    reply=f"{prefix}{index}",
                    headers=headers(message.msg_id),
                )
            await asyncio.wait_for(asyncio.shield(batch.done), self._timeout_s)
        finally:
            self._batch = None

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_ack(self, msg: Msg) -> None:
        batch = self._batch
        number, _, index = msg.subject[len(self._inbox) + 1 :].partition(".")
        if batch is None or number != str(batch.number):
            return  # an ack of a batch given up on
        if msg.headers and msg.headers.get("Status") == "503":
            batch.fail(NoStreamResponseError())  # no stream takes this subject
            return
        if b'"error"' in msg.data:
            error = json.loads(msg.data).get("error")
            if error:  # (nats-py's from_error raises instead of returning the error)
                batch.fail(
                    APIError(
                        code=error.get("code"),
                        description=error.get("description"),
                        err_code=error.get("err_code"),
                    )
                )
                return
        batch.ack(int(index))
