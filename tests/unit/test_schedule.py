"""Scheduled tasks without a database or NATS: the rule (domain/schedule.py), the
aggregate and its stored event (old events without the field still load), the outbox's
message schedule, the submitted CloudEvent, and the idempotency fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from commands.idempotency import fingerprint
from commands.messages import SubmitTask
from commands.public_events import event_data
from domain.schedule import MAX_AHEAD, InvalidSchedule, due_at
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
        (T0 + MAX_AHEAD + timedelta(milliseconds=1), None, "scheduledAt"),
        (None, -1, "delaySeconds"),
        (None, int(MAX_AHEAD.total_seconds()) + 1, "delaySeconds"),
    ],
)
def test_what_is_refused_names_its_field(
    at: datetime | None, delay: int | None, field: str
) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        due_at(at, delay, T0)
    assert refused.value.field == field


def test_thirty_days_ahead_is_the_limit() -> None:
    assert due_at(T0 + MAX_AHEAD, None, T0) == (T0 + MAX_AHEAD).replace(microsecond=123000)


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
