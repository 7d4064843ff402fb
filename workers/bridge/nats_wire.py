"""Two shortcuts below nats-py's public calls, for the relay's publisher (hot: four
JetStream messages and four acks per task).

- ``publish_frames``: a batch's HPUB frames built with one format each and handed to
  the connection's outgoing buffer at once, where ``Client.publish`` checks, encodes
  and appends one message at a time.
- ``tap``: the messages of one subscription go from the connection's parser straight to
  a plain function, where nats-py builds a ``Msg``, queues it and switches to the
  subscription's task for each.

Both use nats-py internals (``Client._send_command``, ``_flush_pending``,
``_flush_queue``, ``_process_msg``, ``stats``, ``Subscription._id``) of the pinned
nats-py (pyproject.toml; tests/unit/test_nats_internals.py checks them). ``available``
checks they are there; without them, or with ``TASKEXEC_FAST_NATS_WIRE=off``, the
publisher keeps to the public calls. tests/integration/test_publisher.py runs every case
both ways.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from workers.protocol import Outgoing

log = logging.getLogger(__name__)

RawHandler = Callable[[bytes, bytes, "bytes | None"], None]

_INTERNALS = ("_send_command", "_flush_pending", "_flush_queue", "_process_msg", "stats")
# Per connection: the tapped subscriptions' handlers by subscription id.
_taps: weakref.WeakKeyDictionary[Client, dict[int, RawHandler]] = weakref.WeakKeyDictionary()


def available(nc: Client) -> bool:
    """Whether this nats-py has the internals the shortcuts use."""
    return all(hasattr(nc, name) for name in _INTERNALS)


def can_write(nc: Client, messages: Sequence[Outgoing]) -> bool:
    """Frames are written directly only on a live connection (nats-py's own path buffers
    or refuses while reconnecting) and for what its checks would pass: payloads within
    the server's limit, subjects and ids without whitespace, headers without line breaks."""
    if not nc.is_connected or nc.is_draining_pubs:
        return False
    limit = nc.max_payload
    for message in messages:
        if len(message.body) > limit or not _plain(message.subject) or not _plain(message.msg_id):
            return False
        if message.headers and any("\r" in v or "\n" in v for v in message.headers.values()):
            return False
    return True


def _plain(text: str) -> bool:
    return bool(text) and " " not in text and "\r" not in text and "\n" not in text


def _header_lines(headers: dict[str, str]) -> bytes:
    """``Name: value`` lines of a message's other headers (ours: no CR or LF in them)."""
    return b"".join(
        b"%b: %b\r\n" % (name.encode(), value.encode()) for name, value in headers.items()
    )


async def publish_frames(nc: Client, reply_prefix: str, messages: Sequence[Outgoing]) -> None:
    """Send ``messages`` as HPUB frames with ``Nats-Msg-Id`` (and their other headers)
    and the reply subject
    ``<reply_prefix><index>``, in order, as one write to the connection's buffer."""
    prefix = reply_prefix.encode()
    frames = []
    size = 0
    for index, message in enumerate(messages):
        header = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n%b\r\n" % (
            message.msg_id.encode(),
            _header_lines(message.headers) if message.headers else b"",
        )
        body = message.body
        frames.append(
            b"HPUB %b %b%d %d %d\r\n%b%b\r\n"
            % (
                message.subject.encode(),
                prefix,
                index,
                len(header),
                len(header) + len(body),
                header,
                body,
            )
        )
        size += len(body)
    client: Any = nc
    client.stats["out_msgs"] += len(messages)
    client.stats["out_bytes"] += size
    await client._send_command(b"".join(frames))
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()


def tap(nc: Client, sub: Subscription, handler: RawHandler) -> bool:
    """From now on, hand the messages of ``sub`` to ``handler(subject, data, headers)``
    (raw bytes; ``headers`` as sent, or None) instead of the subscription's callback.
    False (and nothing changed) if this nats-py lacks what that needs."""
    if not available(nc) or not isinstance(getattr(sub, "_id", None), int):
        return False
    client: Any = nc
    handlers = _taps.get(nc)
    if handlers is None:
        handlers = _taps[nc] = {}
        original = client._process_msg

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            handler = handlers.get(sid)
            if handler is None:
                await original(sid, subject, reply, data, headers)
                return
            client.stats["in_msgs"] += 1
            client.stats["in_bytes"] += len(data)
            try:
                handler(subject, data, headers)
            except Exception:  # never into the parser: that would drop the connection
                log.exception("handling a message on %r failed", subject)

        client._process_msg = process_msg
    handlers[_sid(sub)] = handler
    return True


def untap(nc: Client, sub: Subscription) -> None:
    """The subscription's messages go to its callback again."""
    handlers = _taps.get(nc)
    if handlers is not None:
        handlers.pop(_sid(sub), None)


def _sid(sub: Subscription) -> int:
    sid: int = sub._id
    return sid
