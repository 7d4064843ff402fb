"""JetStream streams and durable consumers: declared here, created idempotently at start."""

from __future__ import annotations

import logging
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from workers.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_PREFIX,
    PRIORITIES,
    RESULTS_CONSUMER,
    RESULTS_STREAM,
    RESULTS_SUBJECT,
    WORK_STREAM,
    WORK_SUBJECT_PREFIX,
    work_consumer,
    work_subject,
)

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
WORK_ACK_WAIT_S = 30.0
WORK_MAX_DELIVER = 5
EVENTS_MAX_AGE_S = 30 * 24 * 3600.0


def stream_configs(events_max_age_s: float = EVENTS_MAX_AGE_S) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_SUBJECT_PREFIX}>"],
            retention=RetentionPolicy.LIMITS,
            max_age=events_max_age_s,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=WORK_STREAM,
            subjects=[f"{WORK_SUBJECT_PREFIX}>"],
            retention=RetentionPolicy.WORK_QUEUE,
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


def consumer_configs() -> list[tuple[str, ConsumerConfig]]:
    """One durable pull consumer per priority (WorkQueue streams forbid overlapping filters)."""
    configs = [
        (
            WORK_STREAM,
            ConsumerConfig(
                name=work_consumer(priority),
                durable_name=work_consumer(priority),
                filter_subject=work_subject(priority),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=WORK_ACK_WAIT_S,
                max_deliver=WORK_MAX_DELIVER,
                max_ack_pending=10_000,
            ),
        )
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
                ack_wait=30.0,
                max_ack_pending=20_000,
            ),
        )
    )
    return configs


async def ensure_streams(js: JetStreamContext) -> None:
    """Create (or bring up to date) every stream and durable consumer we rely on."""
    for config in stream_configs():
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for stream, consumer in consumer_configs():
        try:
            await js.add_consumer(stream, consumer)
        except BadRequestError as exc:
            log.warning("consumer %s on %s kept its old config: %s", consumer.name, stream, exc)


def headers(msg_id: str) -> dict[str, Any]:
    return {"Nats-Msg-Id": msg_id}
