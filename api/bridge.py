"""The NATS side of one ``serve``, built by ``start_bridge`` from its ``ServeParts``.

The relay publishes the store's events, the results consumer records the workers'
reports, lost work is published again, and the sweep fails attempts whose worker
vanished. The sweep and the reconciliation run on the replica whose projection writes
(one at a time across replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from api.bootstrap import ServeParts
from api.health import JetStreamHealth
from api.messaging import connect_nats
from commands.leadership import leadership
from commands.lost_attempts import LEASE_MARGIN_S
from projections.tasks import timestamp_text
from workers.bridge.lost_work import LostWork
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.bridge.results import ResultsConsumer
from workers.streams import WORK_MAX_DELIVER, EventsRetention, ensure_streams

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5.0
# Bytes of a task's messages besides its input (CloudEvent or work item fields, headers).
MESSAGE_ENVELOPE_ROOM = 16 * 1024


@dataclass(frozen=True)
class Bridge:
    parts: ServeParts
    nc: Client
    health: JetStreamHealth
    publisher: JetStreamPublisher
    relay: Relay
    consumer: ResultsConsumer
    lost_work: LostWork
    loops: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.loops.append(asyncio.create_task(self.relay.run(), name="relay"))
        self.loops.append(asyncio.create_task(self.consumer.run(), name="results-consumer"))
        self.loops.append(asyncio.create_task(self.sweep(), name="lost-attempts-sweep"))

    async def stop(self) -> None:
        """Stop the loops, then drain the connection (what is in flight is delivered)."""
        *loops, sweep = self.loops
        sweep.cancel()
        with contextlib.suppress(Exception):
            await self.lost_work.stop()
        self.relay.stop()
        self.consumer.stop()
        _, pending = await asyncio.wait(loops, timeout=5)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.publisher.close()
        with contextlib.suppress(Exception):
            await self.nc.drain()

    async def reconcile_lost_work(self, after_s: float | None = None) -> int:
        """Publish again the work of PENDING tasks whose work is nowhere: due for longer
        than JetStream could have spent delivering it (``after_s``)."""
        if not self.parts.runner.active:  # the replica that sweeps
            return 0
        if after_s is None:
            ack_wait = self.parts.settings.work_ack_wait_s
            after_s = ack_wait * WORK_MAX_DELIVER + LEASE_MARGIN_S
        before = timestamp_text(datetime.now(UTC) - timedelta(seconds=after_s))
        return await self.lost_work.reconcile(self.parts.queries.stranded, before)

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await asyncio.to_thread(expire_lost_attempts, self.parts)
                await self.reconcile_lost_work()
            except Exception:
                log.exception("sweep of lost attempts failed; next one in %d s", SWEEP_INTERVAL_S)


def expire_lost_attempts(parts: ServeParts, grace_s: float | None = None) -> int:
    """Fail (and so retry per policy) lost attempts; on the replica whose projection
    writes. Returns how many."""
    if not parts.runner.active:
        return 0
    expired = parts.lost_attempts.expire(grace_s)
    if expired:
        parts.wakeups()
    return expired


async def start_bridge(parts: ServeParts, nats_url: str) -> Bridge:
    """Connect to NATS (one server or several: a cluster); bring the streams up to date
    (retention, replicas); start the relay, the results consumer, lost work, the sweep."""
    settings = parts.settings
    nc = await connect_nats(nats_url, name="taskexec-serve")
    try:
        retention = EventsRetention(settings.events_max_age_s, settings.events_max_bytes)
        await ensure_streams(
            nc.jetstream(), settings.work_ack_wait_s, retention, replicas=settings.nats_replicas
        )
        # What the relay cannot publish is refused at the door (413), not accepted.
        parts.service.max_input_bytes = nc.max_payload - MESSAGE_ENVELOPE_ROOM
        publisher = JetStreamPublisher(
            nc, wire=settings.fast_paths.nats_wire, work_ack_wait_s=settings.work_ack_wait_s
        )
        relay_lock = leadership(parts.db_config, "relay", parts.locks)  # one across replicas
        relay = Relay(Outbox(parts.service, relay_lock), publisher)
        parts.wakeups.add(relay.poke, first=True)
        consumer = ResultsConsumer(parts.service, nc, on_recorded=parts.wakeups)
        lost_work = LostWork(parts.service, nc, work_ack_wait_s=settings.work_ack_wait_s)
        await lost_work.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    bridge = Bridge(
        parts=parts,
        nc=nc,
        health=JetStreamHealth(nc),
        publisher=publisher,
        relay=relay,
        consumer=consumer,
        lost_work=lost_work,
    )
    bridge.start()
    return bridge
