"""workers/bridge/publisher.py against a real nats-server: a batch returns once JetStream has
stored every message, fails on the server's first refusal, and never counts an ack that
belongs to a batch it gave up on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from api.settings import Settings
from workers.bridge import nats_wire
from workers.bridge.publisher import JetStreamPublisher
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import Outgoing


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="A", subjects=["a.>"]))
    await js.add_stream(StreamConfig(name="B", subjects=["b.>"]))
    yield client
    await client.close()


@pytest.fixture(params=[True, False], ids=["wire", "public"])
def wire(request: pytest.FixtureRequest) -> bool:
    """Every case both ways: frames and acks below nats-py (workers/bridge/nats_wire.py), and
    nats-py's public calls (what runs where those internals are missing)."""
    return bool(request.param)


def message(subject: str, n: int) -> Outgoing:
    return Outgoing(subject=subject, body=f"m{n}".encode(), msg_id=f"{subject}-{n}")


async def test_a_batch_returns_once_every_message_is_stored_in_order(
    nc: Client, wire: bool
) -> None:
    js = nc.jetstream()
    publisher = JetStreamPublisher(nc, wire=wire)
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
    assert publisher.wire is wire
    sub = publisher._sub
    assert sub is not None
    assert (sub._id in nats_wire._taps.get(nc, {})) is wire  # acks came the way asked
    await publisher.close()
    assert sub._id not in nats_wire._taps.get(nc, {})


async def test_a_message_over_the_server_s_limit_is_refused_before_sending(
    nc: Client, wire: bool
) -> None:
    publisher = JetStreamPublisher(nc, wire=wire)
    too_big = Outgoing(subject="a.x", msg_id="big", body=b"x" * (nc.max_payload + 1))
    with pytest.raises(MaxPayloadError):
        await publisher.publish([message("a.x", 1), too_big])
    await publisher.publish([message("a.x", 2)])  # the publisher goes on
    js = nc.jetstream()
    state = (await js.stream_info("A")).state
    assert (await js.get_msg("A", state.last_seq)).data == b"m2"
    stored = [(await js.get_msg("A", n)).data or b"" for n in range(1, 1 + state.messages)]
    assert all(len(data) < 100 for data in stored)  # the large one never reached the stream


async def test_no_stream_for_a_subject_fails_the_batch_at_once(nc: Client, wire: bool) -> None:
    publisher = JetStreamPublisher(nc, timeout_s=30, wire=wire)
    with pytest.raises(NoStreamResponseError):
        await asyncio.wait_for(publisher.publish([message("a.x", 1), message("nowhere.z", 2)]), 10)
    await publisher.publish([message("a.x", 3)])  # the next batch is unaffected
    assert (await nc.jetstream().stream_info("A")).state.messages == 2


async def test_a_stream_refusing_a_message_fails_the_batch(nc: Client, wire: bool) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="FULL", subjects=["full.>"], max_msgs=1, discard=DiscardPolicy.NEW)
    )
    publisher = JetStreamPublisher(nc, wire=wire)
    with pytest.raises(APIError) as refused:
        await publisher.publish([message("full.x", 1), message("full.x", 2)])
    assert refused.value.code is not None
    assert (await js.stream_info("FULL")).state.messages == 1


async def test_an_ack_of_a_batch_given_up_on_is_not_counted(nc: Client, wire: bool) -> None:
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
    publisher = JetStreamPublisher(nc, timeout_s=0.1, wire=wire)
    with pytest.raises(TimeoutError):
        await publisher.publish([message("slow.x", 1)])
    publisher._timeout_s = 1.0  # the second batch waits past the first one's late ack
    with pytest.raises(TimeoutError):
        await publisher.publish([message("slow.x", 2)])
    assert seen == 2


async def test_a_tapped_handler_that_fails_leaves_the_connection_up(nc: Client) -> None:
    tapped = await nc.subscribe("tap.x")
    seen: list[bytes] = []

    def boom(subject: bytes, data: bytes, headers: bytes | None) -> None:
        seen.append(data)
        raise ValueError("boom")

    assert nats_wire.tap(nc, tapped, boom)
    other = await nc.subscribe("tap.y")  # not tapped: nats-py's own way
    await nc.publish("tap.x", b"1")
    await nc.publish("tap.y", b"2")
    assert (await other.next_msg(timeout=2)).data == b"2"
    await nc.publish("tap.x", b"3")
    for _ in range(200):  # (a PONG may overtake a message: flush() proves nothing here)
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert seen == [b"1", b"3"] and nc.is_connected
    nats_wire.untap(nc, tapped)
    await nc.publish("tap.x", b"4")  # untapped: back to the subscription
    assert (await tapped.next_msg(timeout=2)).data == b"4"


@pytest.mark.parametrize(("text", "expected"), [("on", True), ("off", False)])
async def test_the_setting_picks_the_way(nc: Client, text: str, expected: bool) -> None:
    """TASKEXEC_FAST_NATS_WIRE, as the composition root passes it on."""
    fast = Settings.from_env({"TASKEXEC_FAST_NATS_WIRE": text}).fast_paths
    publisher = JetStreamPublisher(nc, wire=fast.nats_wire)
    assert publisher.wire is expected
    await publisher.publish([message("a.x", 1)])
    assert publisher._sub is not None
    assert (publisher._sub._id in nats_wire._taps.get(nc, {})) is expected
    await publisher.close()


async def test_asked_for_but_missing_internals_take_the_public_calls(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another nats-py: the shortcut asked for is not taken, and nothing breaks."""
    monkeypatch.setattr(nats_wire, "_INTERNALS", ("_no_such_internal",))

    async def never(*args: object) -> None:
        raise AssertionError("the frames were written below nats-py")

    monkeypatch.setattr(nats_wire, "publish_frames", never)
    publisher = JetStreamPublisher(nc, wire=True)
    assert publisher.wire is False
    await publisher.publish([message("a.x", n) for n in range(5)])
    assert (await nc.jetstream().stream_info("A")).state.messages == 5
    await publisher.close()


async def test_a_message_s_own_headers_are_sent_both_ways(nc: Client, wire: bool) -> None:
    """A scheduled work item's schedule headers (workers/protocol.py ``schedule_headers``)
    go out with its ``Nats-Msg-Id``, by frames and by the public calls alike."""
    js = nc.jetstream()
    publisher = JetStreamPublisher(nc, wire=wire)
    extra = {"X-Due": "@at 2099-01-01T00:00:00.000Z", "X-Two": "a b"}
    await publisher.publish([Outgoing(subject="a.h", msg_id="h-1", body=b"x", headers=extra)])
    stored = await js.get_msg("A", 1)
    assert stored.headers is not None
    assert {k: stored.headers[k] for k in ("Nats-Msg-Id", *extra)} == {
        "Nats-Msg-Id": "h-1",
        **extra,
    }


def test_headers_with_a_line_break_take_the_public_calls() -> None:
    broken = Outgoing(subject="a.h", msg_id="h", body=b"", headers={"X": "a\r\nB: c"})

    class Live:
        is_connected = True
        is_draining_pubs = False
        max_payload = 1024

    assert not nats_wire.can_write(Live(), [broken])  # type: ignore[arg-type]
    assert nats_wire.can_write(Live(), [Outgoing(subject="a.h", msg_id="h", body=b"")])  # type: ignore[arg-type]
