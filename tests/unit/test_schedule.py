"""Scheduled tasks without a database or NATS: the rule (domain/schedule.py), the
aggregate and its stored event (old events without the field still load), the outbox's
message schedule, the submitted CloudEvent, and the idempotency fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import msgspec
import pytest

from commands.idempotency import fingerprint
from commands.messages import SubmitTask
from commands.public_events import event_data
from domain.schedule import MAX_DELAY_SECONDS, InvalidSchedule, due_at, parse_time
from domain.task import Task
from tests.unit.test_outbox_mapping import T0, TASK_ID, USER, definition, make_mapper
from workers.bridge.outbox import to_messages
from workers.protocol import work_decoder


def scheduled(at: datetime | None, task_type: str = "AUTOMATED") -> Task:
    return Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=definition(task_type),
        input={},
        scheduled_at=at,
    )


def test_nothing_given_is_not_scheduled() -> None:
    assert due_at(None, None, T0) is None


def test_a_delay_counts_from_now_to_the_millisecond() -> None:
    assert due_at(None, 90, T0) == datetime(2024, 5, 1, 12, 1, 30, 123000, tzinfo=UTC)
    assert due_at(None, 0, T0) == T0.replace(microsecond=123000)


def test_a_time_is_kept_in_utc_and_a_past_one_too() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert due_at(datetime(2024, 5, 1, 15, 0, tzinfo=plus_two), None, T0) == datetime(
        2024, 5, 1, 13, 0, tzinfo=UTC
    )
    past = T0 - timedelta(days=400)
    assert due_at(past, None, T0) == past.replace(microsecond=123000)


@pytest.mark.parametrize(
    ("at", "delay", "field"),
    [
        (T0, 5, "scheduledAt"),  # both
        (datetime(2024, 6, 1), None, "scheduledAt"),  # no offset
        (None, -1, "delaySeconds"),
        (None, MAX_DELAY_SECONDS + 1, "delaySeconds"),
    ],
)
def test_what_is_refused_names_its_field(
    at: datetime | None, delay: int | None, field: str
) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        due_at(at, delay, T0)
    assert refused.value.field == field


def test_any_day_ahead_is_accepted() -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert due_at(far, None, T0) == far.replace(microsecond=999000)
    assert due_at(None, MAX_DELAY_SECONDS, T0) == (
        T0 + timedelta(seconds=MAX_DELAY_SECONDS)
    ).replace(microsecond=123000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-24T18:00:00Z", datetime(2026, 12, 24, 18, tzinfo=UTC)),
        ("2026-12-24t18:00:00.1234567+01:30", datetime(2026, 12, 24, 16, 30, 0, 123456, UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
        ("0000-01-01T00:00:00Z", datetime.min.replace(tzinfo=UTC)),  # past: now anyway
        ("0001-01-01T00:00:00+01:00", datetime.min.replace(tzinfo=UTC)),
        ("9999-12-31T23:59:59-01:00", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_rfc3339_times_are_read_in_utc(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    ["soon", "2026-12-24T18:00:00", "2026-12-24 18:00:00Z", "2021-02-30T00:00:00Z",
     "2021-01-01T24:00:00Z", "2021-01-01T00:00:61Z", "2021-01-01T00:00:00+24:00", "0"],
)  # fmt: skip
def test_what_is_not_an_rfc3339_time_is_refused(text: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        parse_time(text)
    assert refused.value.field == "scheduledAt"


def test_a_scheduled_task_waits_with_its_time_as_next_attempt() -> None:
    due = T0 + timedelta(hours=1)
    task = scheduled(due)
    assert task.scheduled_at == task.next_attempt_at == due
    task.cancel(reason=None, force=False, at=T0, actor=USER)
    assert task.next_attempt_at is None and task.scheduled_at == due


def test_an_event_stored_before_schedules_loads_unscheduled() -> None:
    mapper = make_mapper()
    stored = mapper.to_stored_event(next(iter(scheduled(None).collect_events())))
    state: dict[str, Any] = msgspec.json.decode(stored.state)
    state.pop("scheduled_at")
    old = stored.__class__(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=msgspec.json.encode(state),
    )
    event = mapper.to_domain_event(old)
    assert isinstance(event, Task.Submitted) and event.scheduled_at is None
    assert "scheduledAt" not in event_data(event)
    task = event.mutate(None)
    assert isinstance(task, Task)
    assert task.scheduled_at is None and task.next_attempt_at is None


def test_the_outbox_holds_a_future_task_s_work_in_a_message_schedule() -> None:
    due = T0 + timedelta(minutes=5)
    submitted = next(iter(scheduled(due).collect_events()))
    event, work = to_messages(submitted, 7)
    assert work.subject == f"tasks.scheduled.{TASK_ID}"
    assert work.msg_id == f"{TASK_ID}:1:work"
    assert work.headers == {
        "Nats-Schedule": "@at 2024-05-01T12:05:00.123Z",
        "Nats-Schedule-Target": "tasks.work.medium",
    }
    assert work_decoder.decode(work.body).not_before == "2024-05-01T12:05:00.123Z"
    assert msgspec.json.decode(event.body)["data"]["scheduledAt"] == "2024-05-01T12:05:00.123Z"


def test_a_time_already_past_is_published_as_plain_work() -> None:
    submitted = next(iter(scheduled(T0 - timedelta(minutes=5)).collect_events()))
    _, work = to_messages(submitted, 7)
    assert (work.subject, work.headers) == ("tasks.work.medium", None)
    assert work_decoder.decode(work.body).not_before is None


def history_cancelled(due: datetime | None, cancel_at: datetime) -> list[Any]:
    task = scheduled(due)
    task.cancel(reason="no", force=False, at=cancel_at, actor=USER)
    return list(task.collect_events())


def test_a_cancel_replaces_the_schedule_with_one_due_a_second_later() -> None:
    """However far ahead it was: no schedule outlives its cancel marker."""
    events = history_cancelled(datetime(9000, 1, 1, tzinfo=UTC), T0 + timedelta(seconds=5))
    task_at = at_version(events)
    messages = to_messages(events[1], 8, task_at)
    _, marker, replacement = messages
    assert marker.subject == f"$KV.TASK_CANCELLED.{TASK_ID}"
    assert replacement.subject == f"tasks.scheduled.{TASK_ID}"  # the same: replaced
    assert replacement.msg_id == f"{TASK_ID}:1:work:cancelled-2"
    assert replacement.headers == {
        "Nats-Schedule": "@at 2024-05-01T12:00:06.123Z",
        "Nats-Schedule-Target": "tasks.work.medium",
    }
    item = work_decoder.decode(replacement.body)
    assert (item.attempt, item.not_before, item.requeued) == (1, None, 0)


def test_a_cancel_of_a_task_not_waiting_for_its_time_replaces_nothing() -> None:
    for due in (None, T0 + timedelta(seconds=1)):  # not scheduled; due before the cancel
        events = history_cancelled(due, T0 + timedelta(seconds=5))
        assert len(to_messages(events[1], 8, at_version(events))) == 2


def at_version(events: list[Any]) -> Callable[[UUID, int], Task]:
    def task_at(_: UUID, version: int) -> Task:
        task = None
        for event in events[:version]:
            task = event.mutate(task)
        assert isinstance(task, Task)
        return task

    return task_at


def test_a_manual_task_has_no_work_to_schedule() -> None:
    submitted = next(iter(scheduled(T0 + timedelta(hours=1), "MANUAL").collect_events()))
    assert [m.subject for m in to_messages(submitted, 7)] == ["tasks.events.submitted"]


def test_the_fingerprint_holds_the_schedule_as_given() -> None:
    plain = SubmitTask(definition_id="d", input={}, actor=USER)
    at = SubmitTask(definition_id="d", input={}, actor=USER, scheduled_at=T0)
    same = SubmitTask(
        definition_id="d", input={}, actor=USER, scheduled_at=T0.astimezone(timezone.max)
    )
    delay = SubmitTask(definition_id="d", input={}, actor=USER, delay_seconds=5)
    prints = [fingerprint(cmd) for cmd in (plain, at, delay)]
    assert len(set(prints)) == 3
    assert fingerprint(same) == fingerprint(at)
