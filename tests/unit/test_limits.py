"""Concurrency limits without NATS: ``executionConfig.maxConcurrency`` checked at load and
recorded at submit (domain/concurrency_limit.py); a limited definition's subjects,
consumers and token (workers/limit_subjects.py); its work, retries, scheduled work and
cancelled schedules mapped to its own subjects by the outbox, with the limit the relay
makes its slots from; unlimited work exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.concurrency_limit import MAX_CONCURRENCY, check_max_concurrency
from domain.definition import TaskDefinition
from domain.errors import InvalidValue
from domain.task import Task
from domain.values import Actor, Priority, RetryOverrides
from workers.bridge.outbox import to_messages, work_for
from workers.limit_subjects import (
    item_subject,
    limit_token,
    limited_consumer,
    limited_queue,
    limited_subject,
    slot_subject,
)
from workers.protocol import WorkLimit, announced_queue, consumer_queue, work_decoder

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TASK_ID = UUID("7d3c1e7a-5b8e-4c1a-9f00-0123456789ab")
USER = Actor(id="alice", kind="jwt")
WORKER = Actor(id="w", kind="worker")


def definition(limit: Any = 2, executor: str | None = None) -> TaskDefinition:
    config: dict[str, Any] = {"handler": "shop.sync:run"}
    if limit is not None:
        config["maxConcurrency"] = limit
    if executor is not None:
        config["executor"] = executor
    doc = {"id": "Orders.Sync", "name": "n", "type": "AUTOMATED", "version": "1"}
    return TaskDefinition.from_document({**doc, "executionConfig": config})


def submitted(limit: Any = 2, **fields: Any) -> Task:
    return Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=definition(limit),
        input={},
        priority=Priority.HIGH,
        **fields,
    )


@pytest.mark.parametrize("limit", [1, 2, MAX_CONCURRENCY])
def test_a_limit_is_a_whole_number_from_one_to_the_cap(limit: int) -> None:
    assert check_max_concurrency(limit) == limit
    assert definition(limit).max_concurrency == limit
    assert definition(None).max_concurrency is None


@pytest.mark.parametrize("limit", [0, -3, MAX_CONCURRENCY + 1, "2", 2.0, True, [2]])
def test_anything_else_names_the_field(limit: Any) -> None:
    with pytest.raises(InvalidValue, match=r"^Orders.Sync: executionConfig.maxConcurrency "):
        definition(limit)


def test_the_token_is_safe_short_and_tells_ids_apart() -> None:
    token = limit_token("Orders.Sync")
    assert token.startswith("orders-sync-") and len(token) == len("orders-sync-") + 8
    assert limit_token("orders-sync") != token  # the same once made safe: the hash differs
    assert limit_token("Orders.Sync") == token  # stable
    long = limit_token("x" * 128)
    assert len(long) == 32 + 9 and set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_subjects_and_consumers_of_a_limited_definition() -> None:
    token = limit_token("Orders.Sync")
    subject = limited_subject("gpu", token, "HIGH")
    assert subject == f"tasks.work.limited.gpu.{token}.high"
    assert limited_queue(subject) == ("gpu", token, "high")
    announced = subject.replace("tasks.work.", "tasks.queued.")
    assert limited_queue(announced) == ("gpu", token, "high")
    assert announced_queue(announced) is None  # never taken for a pool's announcement
    assert consumer_queue(limited_consumer("gpu", token, "high")) is None  # nor a pool's
    assert limited_queue("tasks.work.limited.high") is None  # a pool called "limited"
    assert slot_subject(token, 0) == f"tasks.slots.{token}.0"
    assert slot_subject(token) == f"tasks.slots.{token}.*"


def test_a_limited_submit_is_published_to_its_own_subject_with_the_current_limit() -> None:
    task = submitted()
    [submit] = task.collect_events()
    _, work = to_messages(submit, 1)
    item = work_decoder.decode(work.body)
    assert item.max_concurrency == 2
    token = limit_token("Orders.Sync")
    assert work.subject == limited_subject("standard-executor", token, "high")
    assert work.limit == WorkLimit("standard-executor", "Orders.Sync", 2, current=True)


def test_retries_and_lost_work_stay_on_the_limited_subject_with_the_submits_limit() -> None:
    task = submitted(retry_policy=RetryOverrides(max_retries=1, retry_interval_ms=10))
    task.collect_events()
    task.start(attempt=1, worker="w", at=T0, actor=WORKER)
    task.fail(attempt=1, error_type="IOError", error_message="x", at=T0, actor=WORKER)
    retry = task.collect_events()[-1]
    _, work = to_messages(retry, 3, lambda _id, _version: task)
    assert work.subject == item_subject(work_for(task, 2))
    assert work.subject.startswith("tasks.work.limited.standard-executor.")
    assert work.limit == WorkLimit("standard-executor", "Orders.Sync", 2, current=False)


def test_a_scheduled_limited_task_fires_into_its_own_subject() -> None:
    task = submitted(scheduled_at=T0 + timedelta(hours=1))
    [submit] = task.collect_events()
    _, schedule = to_messages(submit, 1)
    assert schedule.subject == f"tasks.scheduled.{TASK_ID}"
    assert schedule.headers is not None
    token = limit_token("Orders.Sync")
    target = limited_subject("standard-executor", token, "high")
    assert schedule.headers["Nats-Schedule-Target"] == target
    assert schedule.limit is not None  # its slots are made when the schedule is published


def test_unlimited_work_is_as_before() -> None:
    task = submitted(limit=None)
    [submit] = task.collect_events()
    _, work = to_messages(submit, 1)
    assert (work.subject, work.limit) == ("tasks.work.high", None)
    assert work_decoder.decode(work.body).max_concurrency is None
