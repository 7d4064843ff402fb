"""workers/publisher.py against a real nats-server: a batch returns once JetStream has
stored every message, fails on the server's first refusal, and never counts an ack that
belongs to a batch it gave up on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from workers.nats_server import EmbeddedNatsServer
from workers.protocol import Outgoing
from workers.publisher import JetStreamPublisher


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="A", subjects=["a.>"]))
    await js.add_stream(StreamConfig(name="B", subjects=["b.>"]))
    yield client
    await client.close()


def message(subject: str, n: int) -> Outgoing:
    return Outgoing(subject=subject, body=f"m{n}".encode(), msg_id=f"{subject}-{n}")


async def test_a_batch_returns_once_every_message_is_stored_in_order(nc: Client) -> None:
    js = nc.jetstream()
    publisher = JetStreamPublisher(nc)
    batch = [message("a.x" if n % 3 else "b.y", n) for n in range(300)]
    await publisher.publish(batch)
    a, b = await js.stream_info("A"), await js.stream_info("B")
    assert (a.state.messages, b.state.messages) == (200, 100)
    stored_a = [(await js.get_msg("A", seq)).data for seq in range(1, 201)]
    assert stored_a == [m.body for m in batch if m.subject == "a.x"]

    await publisher.publish(batch)  # again: dropped as duplicates, and acked
    a, b = await js.stream_info("A"), await js.stream_info("B")
    assert (a.state.messages, b.state.messages) == (200, 100)
    await publisher.publish([])  # nothing to send: nothing to wait for
    await publisher.close()


async def test_no_stream_for_a_subject_fails_the_batch_at_once(nc: Client) -> None:
    publisher = JetStreamPublisher(nc, timeout_s=30)
    with pytest.raises(NoStreamResponseError):
        await asyncio.wait_for(publisher.publish([message("a.x", 1), message("nowhere.z", 2)]), 10)
    await publisher.publish([message("a.x", 3)])  # the next batch is unaffected
    assert (await nc.jetstream().stream_info("A")).state.messages == 2


async def test_a_stream_refusing_a_message_fails_the_batch(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="FULL", subjects=["full.>"], max_msgs=1, discard=DiscardPolicy.NEW)
    )
    publisher = JetStreamPublisher(nc)
    with pytest.raises(APIError) as refused:
        await publisher.publish([message("full.x", 1), message("full.x", 2)])
    assert refused.value.code is not None
    assert (await js.stream_info("FULL")).state.messages == 1


async def test_an_ack_of_a_batch_given_up_on_is_not_counted(nc: Client) -> None:
    """A responder answers the first message late and the later ones never: the first
    batch times out, and its late ack arrives while the second batch (same publisher,
    same index 0) waits; counting it would complete the second batch."""
    seen = 0

    async def late_once(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            await asyncio.sleep(0.3)
            await nc.publish(msg.reply, b'{"stream":"A","seq":1}')

    await nc.subscribe("slow.x", cb=late_once)
    publisher = JetStreamPublisher(nc, timeout_s=0.1)
    with pytest.raises(TimeoutError):
        await publisher.publish([message("slow.x", 1)])
    publisher._timeout_s = 1.0  # the second batch waits past the first one's late ack
    with pytest.raises(TimeoutError):
        await publisher.publish([message("slow.x", 2)])
    assert seen == 2
