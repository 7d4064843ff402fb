"""Pull requests on a durable JetStream consumer, without nats-py's fetch().

nats-py's ``fetch(n, timeout)`` waits for the whole batch until the timeout when
fewer messages are there (the server treats ``no_wait`` with ``expires`` as a
lingering pull). Workers need "whatever is there now, at once"; the results consumer
needs "as soon as anything arrives". Both are one request on the JetStream API.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class Puller:
    """Pull requests on one durable consumer through one private inbox."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._outstanding = 0

    async def start(self) -> None:
        async def deliver(msg: Msg) -> None:
            self._queue.put_nowait(msg)

        self._sub = await self._nc.subscribe(self._inbox, cb=deliver, pending_msgs_limit=100_000)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _request(self, body: dict[str, Any]) -> None:
        await self._nc.publish(self._subject, json.dumps(body).encode(), reply=self._inbox)

    async def available(
        self, batch: int, timeout: float = 2.0, expires: float | None = None
    ) -> list[Msg]:
        """Up to ``batch`` messages that are there now; an empty list at once if none.
        ``expires``: the server ends the request then at the latest (a consumer at its
        ``max_ack_pending`` with messages pending would otherwise hold it open)."""
        assert self._sub is not None
        body: dict[str, Any] = {"batch": batch, "no_wait": True}
        if expires is not None:
            body["expires"] = int(expires * 1e9)
        await self._request(body)
        msgs: list[Msg] = []
        while len(msgs) < batch:
            try:
                msg = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                break
            if _status(msg):
                break
            msgs.append(msg)
        return msgs

    async def arriving(self, batch: int, expires: float = 1.0) -> list[Msg]:
        """Messages as soon as at least one arrives (a lingering pull), at most ``batch``.

        Returns an empty list when the request expired with nothing. Messages that
        arrive after we return stay in the inbox and come back on the next call.
        """
        assert self._sub is not None
        if self._outstanding <= 0:
            await self._request({"batch": batch, "expires": int(expires * 1e9)})
            self._outstanding = batch
        msgs: list[Msg] = []
        try:
            first = await asyncio.wait_for(self._queue.get(), expires + 1.0)
        except TimeoutError:
            self._outstanding = 0
            return msgs
        for msg in self._drain(first):
            if _status(msg):
                if msg.headers and msg.headers.get("Status") != "100":
                    self._outstanding = 0
                continue
            self._outstanding -= 1
            msgs.append(msg)
        return msgs

    def _drain(self, first: Msg) -> list[Msg]:
        out = [first]
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None
