"""JetStream streams and durable consumers: declared here, created idempotently at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from workers.protocol import (
    CANCEL_BUCKET,
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
CANCEL_MARKER_TTL_S = 30 * 24 * 3600.0  # longer than any task waits for its next attempt


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


def consumer_configs(work_ack_wait_s: float = WORK_ACK_WAIT_S) -> list[tuple[str, ConsumerConfig]]:
    """One durable pull consumer per priority (WorkQueue streams forbid overlapping filters)."""
    configs = [
        (
            WORK_STREAM,
            ConsumerConfig(
                name=work_consumer(priority),
                durable_name=work_consumer(priority),
                filter_subject=work_subject(priority),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=work_ack_wait_s,
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


async def ensure_streams(
    js: JetStreamContext,
    work_ack_wait_s: float = WORK_ACK_WAIT_S,
    events: EventsRetention | None = None,
) -> None:
    """Create (or bring up to date) every stream and durable consumer we rely on.

    ``events`` is the TASK_EVENTS retention to apply (``serve`` passes the configured
    one). Without it (workers) TASK_EVENTS is created with the defaults if it is missing
    and otherwise left alone, so a worker never undoes the operator's retention.
    """
    for config in stream_configs(events or EventsRetention()):
        try:
            await js.add_stream(config)
        except BadRequestError:
            if config.name == EVENTS_STREAM and events is None:
                continue
            await js.update_stream(config)
    for stream, consumer in consumer_configs(work_ack_wait_s):
        try:
            await js.add_consumer(stream, consumer)
        except BadRequestError as exc:
            log.warning("consumer %s on %s kept its old config: %s", consumer.name, stream, exc)
    # Task id -> cancelled; workers look a task up before they start it, once per attempt:
    # direct gets answer with the message itself, not a JSON API reply with it in base64.
    try:
        await js.create_key_value(
            KeyValueConfig(bucket=CANCEL_BUCKET, history=1, ttl=CANCEL_MARKER_TTL_S, direct=True)
        )
    except BadRequestError as exc:
        log.warning("bucket %s kept its old config: %s", CANCEL_BUCKET, exc)
    await _allow_direct_gets(js, f"KV_{CANCEL_BUCKET}")


async def _allow_direct_gets(js: JetStreamContext, stream: str) -> None:
    """A bucket made before direct gets were asked for: switch them on (an editable
    setting of the stream; the bucket's contents are untouched)."""
    info = await js.stream_info(stream)
    if not info.config.allow_direct:
        info.config.allow_direct = True
        await js.update_stream(info.config)


def headers(msg_id: str) -> dict[str, Any]:
    return {"Nats-Msg-Id": msg_id}
