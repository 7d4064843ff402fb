"""Where a limited definition's work and slots live in JetStream (docs/execution.md,
"Concurrency limits"), and making them.

A definition with ``executionConfig.maxConcurrency`` N (domain/concurrency_limit.py):

- its **work** waits on its own subjects, ``tasks.work.limited.<pool>.<token>.<priority>``,
  in ``TASK_WORK`` (under ``tasks.work.>``: the stream and its republishing to
  ``tasks.queued.>`` cover them as they are), each with a durable consumer
  ``limited-<pool>-<token>-<priority>``. Six tokens: no pool's queue (three or four)
  overlaps them, whatever the pool is called, so the pools' consumers never hand it out.
- its **slots** are N messages, one on each of ``tasks.slots.<token>.<0..N-1>`` in
  ``TASK_SLOTS`` (Limits retention: they stay), read by one consumer ``slots-<token>``
  whose ``max_ack_pending`` is N: JetStream hands out at most N at once, however many
  exist. One subject each, published with a fixed message id only where none is, keeps
  their number exact (a pull finds no slot at once when all are out); a lowered limit
  purges the slots past it. A
  worker holds one while an attempt runs, and hands it back (``nak``) after; a worker
  that dies never does, and the slot comes back after the consumer's ack wait (the work's).
- ``tasks.freed.<pool>.<token>`` (core NATS) tells the pool's idle workers a slot came back.

``<token>``: a definition id may hold ``.`` and upper case, which NATS subjects and
consumer names (files on a case-blind disk) do not take: its first 32 characters in lower
case, anything but letters, digits and ``-`` made ``-``, then ``-`` and 8 hex digits of
the id's SHA-256 (``Orders.Sync`` -> ``orders-sync-<hash>``), so ids differing only there
get tokens of their own.
"""

from __future__ import annotations

import hashlib
import logging
import re

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from domain.executor_pool import DEFAULT_POOL
from workers.protocol import PRIORITIES, WORK_STREAM, WorkItem, work_subject

log = logging.getLogger(__name__)

SLOTS_STREAM = "TASK_SLOTS"
SLOTS_PREFIX = "tasks.slots."
LIMITED_WORK_PREFIX = "tasks.work.limited."
LIMITED_QUEUED_PREFIX = "tasks.queued.limited."
FREED_PREFIX = "tasks.freed."
_UNSAFE = re.compile(r"[^a-z0-9-]")


def limit_token(definition_id: str) -> str:
    """The definition's name in subjects and consumer names (see the module's docstring)."""
    digest = hashlib.sha256(definition_id.encode()).hexdigest()[:8]
    return f"{_UNSAFE.sub('-', definition_id[:32].lower())}-{digest}"


def limited_subject(pool: str, token: str, priority: str) -> str:
    """Where a limited definition's work of ``priority`` waits."""
    return f"{LIMITED_WORK_PREFIX}{pool}.{token}.{priority.lower()}"


def limited_consumer(pool: str, token: str, priority: str) -> str:
    return f"limited-{pool}-{token}-{priority.lower()}"


def limited_queue(subject: str) -> tuple[str, str, str] | None:
    """(pool, token, priority) of a limited work subject or its announcement; else None."""
    for prefix in (LIMITED_WORK_PREFIX, LIMITED_QUEUED_PREFIX):
        if subject.startswith(prefix):
            parts = subject[len(prefix) :].split(".")
            if len(parts) == 3 and parts[2] in PRIORITIES:
                return parts[0], parts[1], parts[2]
    return None


def announced_limited(pool: str) -> str:
    """The announcements of every limited definition's new work in ``pool``."""
    return f"{LIMITED_QUEUED_PREFIX}{pool}.*.*"


def slot_subject(token: str, index: int | None = None) -> str:
    """Slot ``index`` (from 0) of the definition; without one, all its slots (a filter)."""
    return f"{SLOTS_PREFIX}{token}.{'*' if index is None else index}"


def slot_consumer(token: str) -> str:
    return f"slots-{token}"


def freed_subject(pool: str, token: str) -> str:
    """Core NATS: a slot of the definition came back (its pool's idle workers look)."""
    return f"{FREED_PREFIX}{pool}.{token}"


def item_subject(item: WorkItem) -> str:
    """Where ``item`` waits: its definition's own subject when it is limited, else its
    pool's queue of its priority."""
    if item.max_concurrency is None:
        return work_subject(item.priority, item.executor)
    return limited_subject(
        item.executor or DEFAULT_POOL, limit_token(item.definition_id), item.priority
    )


def limited_work_config(
    pool: str, token: str, priority: str, ack_wait_s: float, max_deliver: int
) -> ConsumerConfig:
    """The durable consumer of a limited definition's work of one priority."""
    name = limited_consumer(pool, token, priority)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=limited_subject(pool, token, priority),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=10_000,
    )


def slots_config(token: str, limit: int, ack_wait_s: float) -> ConsumerConfig:
    """The slot consumer: at most ``limit`` slots out at once; a slot never runs out of
    deliveries (-1) and comes back ``ack_wait_s`` after its holder's last word."""
    return ConsumerConfig(
        name=slot_consumer(token),
        durable_name=slot_consumer(token),
        filter_subject=slot_subject(token),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=limit,
    )


async def ensure_limit(
    js: JetStreamContext,
    pool: str,
    definition_id: str,
    limit: int,
    ack_wait_s: float,
    max_deliver: int,
    current: bool = True,
) -> int:
    """The definition's work consumers in ``pool``, its slot consumer and at least
    ``limit`` slots (idempotent); the limit in force. ``current``: ``limit`` is the
    definition's now, and an existing slot consumer is set to it; else an existing one
    keeps its own."""
    token = limit_token(definition_id)
    for priority in PRIORITIES:
        config = limited_work_config(pool, token, priority, ack_wait_s, max_deliver)
        try:
            await js.add_consumer(WORK_STREAM, config)
        except BadRequestError as exc:
            log.warning("consumer %s kept its old config: %s", config.name, exc)
    if not current:
        try:
            info = await js.consumer_info(SLOTS_STREAM, slot_consumer(token))
            limit = int(info.config.max_ack_pending or limit)
        except NotFoundError:
            pass
    await js.add_consumer(SLOTS_STREAM, slots_config(token, limit, ack_wait_s))  # or update
    await _top_up(js, token, limit)
    return limit


async def _top_up(js: JetStreamContext, token: str, limit: int) -> None:
    """One slot message on each of the definition's ``limit`` slot subjects, none past
    them. Two processes topping up at once publish the same message ids: JetStream keeps
    one. A slot purged while held frees its place at once: while a lowered limit takes
    effect, up to the old limit may run until the attempts running finish."""
    filter_ = slot_subject(token)
    info = await js.stream_info(SLOTS_STREAM, subjects_filter=filter_)
    have = info.state.subjects or {}
    for index in range(limit):
        subject = slot_subject(token, index)
        if not have.get(subject):
            await js.publish(subject, b"", headers={"Nats-Msg-Id": f"slot:{token}:{index}"})
    for subject in have:
        if int(subject.rpartition(".")[2]) >= limit:
            await js.purge_stream(SLOTS_STREAM, subject=subject)
