"""What is read when Prometheus scrapes ``serve``, not kept up per request.

- ``taskexec_tasks{status}``: the read model's counts table (a row per status and type,
  kept exact by the projection: a handful of rows however many tasks there are);
- ``taskexec_projection_lag_events``: notifications in the event store past the
  projection's position; ``taskexec_relay_lag_events``: past the relay's recorded
  position (recorded at least every 0.5 s while it publishes: workers/bridge/relay.py);
- ``taskexec_work_pending``, ``_unacked``, ``_oldest_pending_seconds`` per executor pool
  and priority, and
  ``taskexec_results_lag_messages``: the durable consumers (workers/bridge/backlog.py).

A source that does not answer (the database away, JetStream without a leader) leaves
its families out of that scrape rather than repeating stale values; the rest are served.
These are the same on every replica (read from the shared stores): aggregate them with
``max``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import anyio.to_thread
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.bootstrap import ServeParts
from commands.db_monitor import DatabaseUnavailable
from domain.values import TaskStatus
from workers.bridge.backlog import Backlog, read_backlog
from workers.bridge.outbox import Outbox

log = logging.getLogger(__name__)

JETSTREAM_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class StoreFigures:
    statuses: dict[str, int]
    projection_lag: int
    relay_lag: int


def store_figures(parts: ServeParts) -> StoreFigures | None:
    """The read model's counts and the lags (blocking: three short queries)."""
    try:
        projected = parts.runner.position
        relayed = Outbox(parts.service).position()
        head = parts.service.recorder.max_notification_id() or 0
        statuses = parts.queries.status_counts()
    except DatabaseUnavailable:  # the monitor has logged the outage
        return None
    except Exception as exc:
        log.warning("metrics: the store's figures are left out of this scrape: %r", exc)
        return None
    return StoreFigures(statuses, max(0, head - projected), max(0, head - relayed))


async def backlog(nc: Client | None) -> Backlog | None:
    """JetStream's backlog, or None without NATS or an answer within a second."""
    if nc is None or not nc.is_connected:
        return None
    try:
        return await read_backlog(nc.jetstream(), JETSTREAM_TIMEOUT_S)
    except Exception as exc:  # no leader, no quorum, a timeout: not this scrape
        log.debug("metrics: JetStream's backlog left out of this scrape: %r", exc)
        return None


class _Figures(Collector):
    def __init__(self, store: StoreFigures | None, queues: Backlog | None) -> None:
        self._store = store
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        store, queues = self._store, self._queues
        if store is not None:
            tasks = GaugeMetricFamily(
                "taskexec_tasks", "Tasks per status in the read model", labels=["status"]
            )
            for status in TaskStatus:
                tasks.add_metric([status.value], store.statuses.get(status.value, 0))
            yield tasks
            yield GaugeMetricFamily(
                "taskexec_projection_lag_events",
                "Events in the store not yet applied to the read models",
                value=store.projection_lag,
            )
            yield GaugeMetricFamily(
                "taskexec_relay_lag_events",
                "Events in the store not yet published to NATS (as last recorded)",
                value=store.relay_lag,
            )
        if queues is not None:
            families = (
                ("pending", "Work items no worker has been given yet"),
                ("unacked", "Work items given to a worker and not yet acknowledged"),
                ("oldest_pending_seconds", "Age of the oldest work item not yet given out"),
            )
            for suffix, text in families:
                labels = ["pool", "priority"]
                family = GaugeMetricFamily(f"taskexec_work_{suffix}", text, labels=labels)
                for (pool, priority), queue in sorted(queues.work.items()):
                    value = {"pending": queue.pending, "unacked": queue.unacked}
                    family.add_metric([pool, priority.upper()], value.get(suffix, queue.oldest_s))
                yield family
            yield GaugeMetricFamily(
                "taskexec_results_lag_messages",
                "Worker reports in NATS not yet recorded in the store",
                value=queues.results,
            )


def render(
    registry: CollectorRegistry, store: StoreFigures | None, queues: Backlog | None
) -> bytes:
    """The text exposition: the counted families, then the ones read now."""
    read_now = CollectorRegistry(auto_describe=False)
    read_now.register(_Figures(store, queues))
    return generate_latest(registry) + generate_latest(read_now)


async def scrape(parts: ServeParts, registry: CollectorRegistry, nc: Client | None) -> bytes:
    """Everything, read concurrently: JetStream on the loop, the store on a thread."""
    queues = asyncio.ensure_future(backlog(nc))
    store = await anyio.to_thread.run_sync(store_figures, parts)
    return await anyio.to_thread.run_sync(render, registry, store, await queues)
