"""JetStream streams and durable consumers: declared here, created idempotently at start."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from workers.limit_subjects import SLOTS_PREFIX, SLOTS_STREAM
from workers.protocol import (
    CANCEL_BUCKET,
    EVENTS_STREAM,
    EVENTS_SUBJECT_PREFIX,
    PRIORITIES,
    QUEUED_SUBJECT_PREFIX,
    RESULTS_CONSUMER,
    RESULTS_STREAM,
    RESULTS_SUBJECT,
    SCHEDULE_SUBJECT_PREFIX,
    WORK_STREAM,
    WORK_SUBJECT_PREFIX,
    work_consumer,
    work_subject,
)

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
WORK_ACK_WAIT_S = 30.0
WORK_MAX_DELIVER = 5
# Reports a process pulled and did not ack (it died) are delivered again after this long:
# the time a crashed serve's reports wait. The consumer signals progress on long batches.
RESULTS_ACK_WAIT_S = 10.0
EVENTS_MAX_AGE_S = 30 * 24 * 3600.0
# Longer than any task waits for its next attempt; a scheduled task's schedule is replaced
# at its cancel (workers/bridge/outbox.py), so its wait does not count.
CANCEL_MARKER_TTL_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class EventsRetention:
    """How much of TASK_EVENTS JetStream keeps (Limits retention; the oldest go first).

    The event store keeps everything for good: what the stream has dropped can still be
    read with ``taskexec audit export``.
    """

    max_age_s: float = EVENTS_MAX_AGE_S  # 0: no age limit
    max_bytes: int = -1  # -1: no size limit

    @property
    def duplicate_window_s(self) -> float:
        """JetStream refuses a duplicate window longer than the stream's max age."""
        if self.max_age_s > 0:
            return min(DUPLICATE_WINDOW_S, self.max_age_s)
        return DUPLICATE_WINDOW_S


def stream_configs(events: EventsRetention = EventsRetention()) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_SUBJECT_PREFIX}>"],
            retention=RetentionPolicy.LIMITS,
            max_age=events.max_age_s,
            max_bytes=events.max_bytes,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=events.duplicate_window_s,
        ),
        StreamConfig(
            name=WORK_STREAM,
            # Work by priority, and scheduled tasks' work until it is due (a message
            # schedule: JetStream publishes it to its priority's subject then).
            subjects=[f"{WORK_SUBJECT_PREFIX}>", f"{SCHEDULE_SUBJECT_PREFIX}>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_msg_schedules=True,  # nats-server 2.12+; cannot be switched off again
            # Every stored work item's headers on core NATS: wakes idle workers, also
            # for work no client published (a schedule that came due); of any pool
            # (``tasks.work.<pool>.<priority>`` -> ``tasks.queued.<pool>.<priority>``).
            republish=RePublish(
                src=f"{WORK_SUBJECT_PREFIX}>",
                dest=f"{QUEUED_SUBJECT_PREFIX}>",
                headers_only=True,
            ),
        ),
        StreamConfig(
            # Limited definitions' slots (workers/limit_subjects.py): a few messages each,
            # kept (Limits retention); their consumers hand out at most the limit at once.
            name=SLOTS_STREAM,
            subjects=[f"{SLOTS_PREFIX}>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=RESULTS_STREAM,
            subjects=[RESULTS_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


def work_consumer_config(
    priority: str, pool: str | None = None, work_ack_wait_s: float = WORK_ACK_WAIT_S
) -> ConsumerConfig:
    """The durable pull consumer of one pool's work of one priority (WorkQueue streams
    forbid overlapping filters: one per subject). It takes every message on its subject
    however long before it was made: a WorkQueue stream keeps messages no consumer is
    interested in (tests/integration/test_pools.py checks it on a real server)."""
    return ConsumerConfig(
        name=work_consumer(priority, pool),
        durable_name=work_consumer(priority, pool),
        filter_subject=work_subject(priority, pool),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=work_ack_wait_s,
        max_deliver=WORK_MAX_DELIVER,
        max_ack_pending=10_000,
    )


def consumer_configs(work_ack_wait_s: float = WORK_ACK_WAIT_S) -> list[tuple[str, ConsumerConfig]]:
    """The default pool's work consumers (one per priority) and the results consumer."""
    configs = [
        (WORK_STREAM, work_consumer_config(priority, None, work_ack_wait_s))
        for priority in PRIORITIES
    ]
    configs.append(
        (
            RESULTS_STREAM,
            ConsumerConfig(
                name=RESULTS_CONSUMER,
                durable_name=RESULTS_CONSUMER,
                filter_subject=RESULTS_SUBJECT,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=RESULTS_ACK_WAIT_S,
                max_ack_pending=20_000,
            ),
        )
    )
    return configs


async def ensure_streams(
    js: JetStreamContext,
    work_ack_wait_s: float = WORK_ACK_WAIT_S,
    events: EventsRetention | None = None,
    replicas: int | None = None,
) -> None:
    """Create (or bring up to date) every stream and durable consumer we rely on.

    ``events`` is the TASK_EVENTS retention to apply (``serve`` passes the configured
    one). Without it (workers) TASK_EVENTS is created with the defaults if it is missing
    and otherwise left alone, so a worker never undoes the operator's retention.

    ``replicas`` is every stream's and the cancel bucket's replica count; an existing
    stream with another count is changed in place (its consumers follow). Without it
    (workers) missing streams get 1 and existing ones keep theirs: never scaled down.
    """
    for config in stream_configs(events or EventsRetention()):
        assert config.name is not None
        current = await _existing_config(js, config.name)
        config.num_replicas = _replicas(replicas, current)
        try:
            await js.add_stream(config)  # the same config again: a no-op
        except BadRequestError:
            # Made meanwhile by another process starting (``dev``: serve and a worker)?
            current = current or await _existing_config(js, config.name)
            if current is None:
                raise
            before = current.num_replicas or 1
            if config.name == EVENTS_STREAM and events is None:
                # Keep the operator's retention: only the replicas may change.
                if config.num_replicas == before:
                    continue
                current.num_replicas, config = config.num_replicas, current
            if config.num_replicas != before:
                log.info("stream %s: replicas %d -> %d", config.name, before, config.num_replicas)
            await js.update_stream(config)  # in place (replicas too: JetStream 2.10+)
    for stream, consumer in consumer_configs(work_ack_wait_s):
        try:
            await js.add_consumer(stream, consumer)
        except BadRequestError as exc:
            log.warning("consumer %s on %s kept its old config: %s", consumer.name, stream, exc)
    # Task id -> cancelled; workers look a task up before they start it, once per attempt:
    # direct gets answer with the message itself, not a JSON API reply with it in base64.
    bucket_stream = f"KV_{CANCEL_BUCKET}"
    current = await _existing_config(js, bucket_stream)
    try:
        await js.create_key_value(
            KeyValueConfig(
                bucket=CANCEL_BUCKET,
                history=1,
                ttl=CANCEL_MARKER_TTL_S,
                direct=True,
                # An existing bucket keeps its count here (no warning for it) and gets
                # the wanted one from _tune_bucket below.
                replicas=_replicas(None if current else replicas, current),
            )
        )
    except BadRequestError as exc:
        log.warning("bucket %s kept its old config: %s", CANCEL_BUCKET, exc)
    await _tune_bucket(js, bucket_stream, replicas)


def _replicas(wanted: int | None, current: StreamConfig | None) -> int:
    """The replica count to ask for: the wanted one, else the stream's own, else 1."""
    if wanted is not None:
        return wanted
    return (current.num_replicas or 1) if current is not None else 1


async def ensure_pool_consumers(
    js: JetStreamContext, pools: Iterable[str], work_ack_wait_s: float = WORK_ACK_WAIT_S
) -> None:
    """Every priority's work consumer of each of ``pools`` (idempotent: an existing one is
    left as it is). The default pool's are made by ``ensure_streams``."""
    for pool in pools:
        for priority in PRIORITIES:
            config = work_consumer_config(priority, pool, work_ack_wait_s)
            try:
                await js.add_consumer(WORK_STREAM, config)
            except BadRequestError as exc:
                log.warning("consumer %s kept its old config: %s", config.name, exc)


async def _existing_config(js: JetStreamContext, stream: str) -> StreamConfig | None:
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return None
    config: StreamConfig = info.config
    return config


async def _tune_bucket(js: JetStreamContext, stream: str, replicas: int | None) -> None:
    """A bucket made before direct gets were asked for: switch them on; one with other
    replicas: change them (both editable settings of the stream; contents untouched)."""
    info = await js.stream_info(stream)
    config: StreamConfig = info.config
    before = config.num_replicas or 1
    if config.allow_direct and replicas in (None, before):
        return
    config.allow_direct = True
    if replicas is not None and replicas != before:
        log.info("stream %s: replicas %d -> %d", stream, before, replicas)
        config.num_replicas = replicas
    await js.update_stream(config)


def headers(msg_id: str) -> dict[str, Any]:
    return {"Nats-Msg-Id": msg_id}
