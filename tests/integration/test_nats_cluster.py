"""A real 3-node JetStream cluster (tests/nats_cluster.py): the service connects with a
comma-separated TASKEXEC_NATS_URL, its streams and cancel bucket get the configured
replicas (raised in place when they have fewer), and work is still accepted after the
node leading TASK_WORK is killed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client

from api.messaging import connect_nats
from tests.nats_cluster import NatsCluster
from workers.limit_subjects import SLOTS_STREAM
from workers.protocol import (
    CANCEL_BUCKET,
    EVENTS_STREAM,
    PRIORITIES,
    RESULTS_STREAM,
    WORK_STREAM,
    cancel_subject,
    work_consumer,
    work_subject,
)
from workers.streams import EventsRetention, ensure_streams

STREAMS = (EVENTS_STREAM, WORK_STREAM, RESULTS_STREAM, SLOTS_STREAM, f"KV_{CANCEL_BUCKET}")
SETTLE_TIMEOUT_S = 30.0  # a raised stream: ~11 s measured, its consumers 11-21 s
# nats-server's Raft: a follower waits 4-9 s for a lost leader before it campaigns.
ELECTION_BOUND_S = 20.0  # a kill -> a new leader (two election rounds at worst)
PUBLISH_BOUND_S = 10.0  # a new leader -> an acknowledged publish


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "cluster") as running:
        yield running


@pytest.fixture
async def nc(cluster: NatsCluster) -> AsyncIterator[Client]:
    client = await connect_nats(cluster.url, name="test-cluster")  # as serve and worker do
    yield client
    await client.close()


async def _settled(js: Any, stream: str, replicas: int) -> Any:
    """The stream's info once it has a leader and ``replicas - 1`` current followers."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        info = await js.stream_info(stream)
        followers = (info.cluster.replicas if info.cluster else None) or []
        if (
            info.cluster
            and info.cluster.leader
            and len(followers) == replicas - 1
            and all(peer.current for peer in followers)
        ):
            return info
        assert time.monotonic() < deadline, f"{stream} did not settle: {info.cluster}"
        await asyncio.sleep(0.1)


async def _consumer_settled(js: Any, stream: str, consumer: str, replicas: int) -> Any:
    """The consumer's info once it has ``replicas - 1`` followers (it inherits the
    stream's replicas, asynchronously after the stream itself)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        info = await js.consumer_info(stream, consumer)
        cluster = info.cluster  # None for a moment while the consumer moves to its peers
        if cluster and cluster.leader and len(cluster.replicas or []) == replicas - 1:
            return info
        assert time.monotonic() < deadline, f"{consumer} did not settle: {info.cluster}"
        await asyncio.sleep(0.1)


async def test_the_client_knows_every_server_of_the_list(cluster: NatsCluster, nc: Client) -> None:
    assert cluster.url.count(",") == 2
    known = {f"nats://{server.netloc}" for server in nc.servers}
    assert {cluster.client_url(i) for i in range(3)} <= known


async def test_every_stream_and_the_bucket_get_three_replicas(
    cluster: NatsCluster, nc: Client
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, events=EventsRetention(max_age_s=3600), replicas=3)
    nodes = {cluster.node_name(i) for i in range(3)}
    for stream in STREAMS:
        info = await _settled(js, stream, 3)
        assert info.config.num_replicas == 3
        assert {info.cluster.leader, *(p.name for p in info.cluster.replicas)} == nodes
    for priority in PRIORITIES:  # consumers follow their stream
        await _consumer_settled(js, WORK_STREAM, work_consumer(priority), 3)

    # A worker starting later (no replicas of its own) scales nothing down.
    await ensure_streams(js)
    for stream in STREAMS:
        assert (await js.stream_info(stream)).config.num_replicas == 3
    assert (await js.stream_info(EVENTS_STREAM)).config.max_age == 3600


async def test_streams_made_with_one_replica_are_raised_in_place(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, replicas=1)  # as an earlier version (or setting) made them
    for stream in STREAMS:
        info = await js.stream_info(stream)
        assert info.config.num_replicas == 1
        assert info.cluster is not None
        assert not info.cluster.replicas
    await js.publish(work_subject("medium"), b"queued before", stream=WORK_STREAM)
    await js.publish(cancel_subject("t-1"), b"{}")

    with caplog.at_level(logging.INFO, logger="workers.streams"):
        await ensure_streams(js, replicas=3)
    raised = {r.getMessage() for r in caplog.records if "replicas 1 -> 3" in r.getMessage()}
    assert raised == {f"stream {stream}: replicas 1 -> 3" for stream in STREAMS}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    for stream in STREAMS:
        info = await _settled(js, stream, 3)
        assert info.config.num_replicas == 3
    assert (await js.stream_info(WORK_STREAM)).state.messages == 1  # nothing lost
    bucket = await js.key_value(CANCEL_BUCKET)
    assert (await bucket.get("t-1")).value == b"{}"
    assert (await js.stream_info(f"KV_{CANCEL_BUCKET}")).config.allow_direct
    for priority in PRIORITIES:  # consumers follow their stream, a little later
        await _consumer_settled(js, WORK_STREAM, work_consumer(priority), 3)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="workers.streams"):
        await ensure_streams(js, replicas=3)  # every later start: nothing to change
    assert not [r for r in caplog.records if "replicas" in r.getMessage()]


async def test_work_is_accepted_after_its_stream_leader_is_killed(
    cluster: NatsCluster, nc: Client
) -> None:
    js = nc.jetstream()
    await ensure_streams(js, replicas=3)
    before = await _settled(js, WORK_STREAM, 3)
    killed = before.cluster.leader
    cluster.kill(cluster.index_of(killed))
    killed_at = time.monotonic()

    # Short requests in bounded loops; the probe's timeout is the election's resolution.
    probe, quick = nc.jetstream(timeout=0.25), nc.jetstream(timeout=1.0)
    leader = await _new_leader(probe, WORK_STREAM, killed)
    elected_after = time.monotonic() - killed_at

    elected_at = time.monotonic()
    ack, tries = None, 0
    while ack is None:
        waited = time.monotonic() - elected_at
        assert waited < PUBLISH_BOUND_S, f"no ack {waited:.1f}s after {leader} was elected"
        tries += 1
        try:  # one id for every try: a try whose ack was lost is not stored twice
            ack = await quick.publish(
                work_subject("medium"), b"after the kill", headers={"Nats-Msg-Id": "w-1"}
            )
        except (TimeoutError, nats.errors.Error):
            await asyncio.sleep(0.05)
    acked_after = time.monotonic() - killed_at
    assert ack.stream == WORK_STREAM
    after = await js.stream_info(WORK_STREAM)
    assert after.cluster is not None
    assert after.cluster.leader not in (None, killed)
    assert after.state.messages == 1
    print(
        f"\n{killed} (TASK_WORK leader) killed: {leader} elected after {elected_after:.2f}s, "
        f"ack after {acked_after:.2f}s ({tries} tries)"
    )

    # The node comes back on its ports and store, and catches up as a follower.
    await asyncio.to_thread(cluster.start, cluster.index_of(killed))
    back = await _settled(js, WORK_STREAM, 3)
    assert killed in {peer.name for peer in back.cluster.replicas} | {back.cluster.leader}
    assert back.state.messages == 1


async def _new_leader(js: Any, stream: str, old: str) -> str:
    """The stream's leader once it is another node than ``old`` (a Raft election:
    followers wait 4-9 s for a lost leader before they campaign)."""
    deadline = time.monotonic() + ELECTION_BOUND_S
    while True:
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            leader = (await js.stream_info(stream)).cluster.leader
            if leader not in (None, old):
                return str(leader)
        assert time.monotonic() < deadline, f"{stream}: no new leader within {ELECTION_BOUND_S}s"
        await asyncio.sleep(0.05)


async def test_more_replicas_than_nodes_is_refused_by_the_cluster(nc: Client) -> None:
    with pytest.raises(nats.js.errors.BadRequestError, match="no suitable peers"):
        await ensure_streams(nc.jetstream(), replicas=5)
