"""Requeue (retry a finished task) in the Task aggregate: which statuses allow it, what it
does to attempts and the error, the retry policy's new round, and what a worker does
with a cancel marker once the task was requeued after it (workers/admission.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Mapper

from commands.transcoder import PayloadSafeTranscoder
from domain.definition import TaskDefinition
from domain.errors import IllegalTransition
from domain.task import Task
from domain.values import Actor, TaskStatus
from workers.admission import stopped
from workers.protocol import WorkItem

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USER = Actor("alice", "jwt")
OPERATOR = Actor("ops@host", "operator")
WORKER = Actor("w-1", "worker")


def definition(kind: str = "AUTOMATED", **retry: Any) -> TaskDefinition:
    doc: dict[str, Any] = {
        "id": "d",
        "name": "D",
        "type": kind,
        "version": "1",
        "retryPolicy": {"maxRetries": 2, "retryInterval": 1000, "backoffMultiplier": 3, **retry},
        "executionConfig": {"handler": "m:f"},
    }
    return TaskDefinition.from_document(doc)


def task_of(d: TaskDefinition | None = None) -> Task:
    return Task.submit(
        task_id=uuid4(), at=T0, actor=USER, definition=d or definition(), input={"n": 1}
    )


def fail(task: Task, attempt: int, at: datetime, error_type: str = "IOError") -> None:
    task.start(attempt=attempt, worker="w-1", at=at, actor=WORKER)
    task.fail(attempt=attempt, error_type=error_type, error_message="x", at=at, actor=WORKER)


def failed_for_good(d: TaskDefinition | None = None) -> Task:
    """Three attempts (maxRetries 2), each failed: FAILED at attempt 3."""
    task = task_of(d)
    for attempt in (1, 2, 3):
        fail(task, attempt, T0 + timedelta(minutes=attempt))
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 3)
    return task


def timed_out() -> Task:
    task = task_of(definition(maxRetries=0))
    task.start(attempt=1, worker="w-1", at=T0, actor=WORKER)
    task.fail(attempt=1, error_type="TIMEOUT", error_message="5 s", at=T0, actor=WORKER)
    assert task.status is TaskStatus.TIMED_OUT
    return task


def cancelled_while_a_retry_waited() -> Task:
    task = task_of()
    fail(task, 1, T0)
    assert task.status is TaskStatus.PENDING and task.next_attempt_at is not None
    task.cancel(reason="stop", force=False, at=T0 + timedelta(seconds=1), actor=USER)
    return task


@pytest.mark.parametrize(
    ("make", "next_attempt"),
    [(failed_for_good, 4), (timed_out, 2), (cancelled_while_a_retry_waited, 2)],
)
def test_a_finished_task_without_output_is_pending_again_from_its_next_attempt(
    make: Any, next_attempt: int
) -> None:
    task = make()
    task.collect_events()
    at = T0 + timedelta(hours=1)
    task.requeue(reason="the provider is back", at=at, actor=OPERATOR)
    [event] = task.collect_events()
    assert isinstance(event, Task.Requeued)
    assert (event.attempt, event.reason, event.actor) == (
        next_attempt,
        "the provider is back",
        OPERATOR.as_dict(),
    )
    assert task.status is TaskStatus.PENDING
    assert task.attempt == next_attempt - 1  # attempts started: unchanged
    assert task.awaits_start(next_attempt) and not task.awaits_start(next_attempt - 1)
    assert (task.error, task.cancel_reason, task.next_attempt_at) == (None, None, None)
    assert (task.retry_base, task.requeued_version) == (next_attempt - 1, task.version)
    assert task.updated_at == at
    task.start(attempt=next_attempt, worker="w-2", at=at, actor=WORKER)
    task.complete(attempt=next_attempt, output={"ok": True}, at=at, actor=WORKER)
    assert task.state()["status"] == "COMPLETED"


def make_pending() -> Task:
    return task_of()


def make_running() -> Task:
    task = task_of()
    task.start(attempt=1, worker="w-1", at=T0, actor=WORKER)
    return task


def make_completed() -> Task:
    task = make_running()
    task.complete(attempt=1, output={}, at=T0, actor=WORKER)
    return task


def make_retry_waiting() -> Task:
    task = task_of()
    fail(task, 1, T0)
    return task


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (make_pending, "PENDING"),
        (make_running, "RUNNING"),
        (make_completed, "COMPLETED"),
        (make_retry_waiting, "PENDING"),
    ],
)
def test_a_pending_running_or_completed_task_cannot_be_requeued(make: Any, status: str) -> None:
    task = make()
    before = (task.state(), task.version)
    with pytest.raises(IllegalTransition) as refused:
        task.requeue(reason=None, at=T0, actor=OPERATOR)
    assert refused.value.status == status
    assert (task.state(), task.version) == before


def test_a_requeue_grants_the_policy_afresh_counted_from_its_first_attempt() -> None:
    task = failed_for_good()  # maxRetries 2, 1 s then 3 s
    at = T0 + timedelta(hours=1)
    task.requeue(reason=None, at=at, actor=OPERATOR)
    for attempt, delay_ms in ((4, 1000), (5, 3000)):  # the round's waits, from the first
        fail(task, attempt, at)
        assert task.status is TaskStatus.PENDING
        assert task.next_attempt_at == at + timedelta(milliseconds=delay_ms)
        at = task.next_attempt_at
    fail(task, 6, at)  # the round's third attempt: no retry left
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 6)
    # Requeued once more: another round of three.
    task.requeue(reason=None, at=at, actor=OPERATOR)
    fail(task, 7, at)
    assert task.status is TaskStatus.PENDING


def test_without_retries_a_requeue_is_one_more_attempt_and_errors_not_retried_end_it() -> None:
    task = task_of(definition(maxRetries=0, nonRetryableErrors=["Declined"]))
    fail(task, 1, T0)
    task.requeue(reason=None, at=T0, actor=OPERATOR)
    fail(task, 2, T0)
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 2)

    declined = failed_for_good(definition(nonRetryableErrors=["Declined"]))
    declined.requeue(reason=None, at=T0, actor=OPERATOR)
    fail(declined, 4, T0, error_type="Declined")
    assert (declined.status, declined.error) == (
        TaskStatus.FAILED,
        {"type": "Declined", "message": "x"},
    )


def test_a_cancelled_manual_task_waits_for_a_person_again() -> None:
    task = task_of(definition("MANUAL"))
    task.cancel(reason=None, force=False, at=T0, actor=USER)
    task.requeue(reason=None, at=T0, actor=OPERATOR)
    assert task.status is TaskStatus.PENDING
    task.complete_manually(output={"approved": True}, at=T0, actor=USER)
    assert task.state()["status"] == "COMPLETED"


def test_the_stored_requeue_replays_to_the_same_state() -> None:
    task = failed_for_good()
    task.requeue(reason="again", at=T0 + timedelta(hours=1), actor=OPERATOR)
    fail(task, 4, T0 + timedelta(hours=2))
    events = task.collect_events()
    mapper: Mapper[UUID] = Mapper(transcoder=PayloadSafeTranscoder())
    stored = [mapper.to_stored_event(e) for e in events]
    assert "taskexec.task.requeued.v1" in [s.topic for s in stored]
    replayed: Any = None
    for record in stored:
        event: Any = mapper.to_domain_event(record)
        replayed = event.mutate(replayed)
    assert replayed.state() == task.state()
    assert replayed.state()["retry_base"] == 3


def work(requeued: int) -> WorkItem:
    return WorkItem("t", 2, "AUTOMATED", "d", {}, 1000, "MEDIUM", requeued=requeued)


def test_a_cancel_marker_stops_work_unless_the_work_follows_a_later_requeue() -> None:
    assert not stopped(work(0), {})  # no marker
    assert stopped(work(0), {"t": 0}) and stopped(work(0), {"t": 5})  # plain work
    assert not stopped(work(6), {"t": 5})  # cancelled at v5, requeued at v6
    assert not stopped(work(6), {"t": 0})  # a marker older than versions on markers
    assert stopped(work(6), {"t": 8})  # cancelled again after the requeue
