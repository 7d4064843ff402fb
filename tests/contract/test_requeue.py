"""Requeue through the write side (``RequeueTask`` in the group commit, as ``POST
…/retry`` and ``taskexec tasks retry`` send it): an answer per command, one transaction
per batch, and the next attempt's reports accepted on every replica. The same cases on
every event store (tests/contract/conftest.py)."""

from __future__ import annotations

from uuid import UUID, uuid4

from commands.errors import Conflict, NotFound
from commands.messages import CancelTask, Outcome, RequeueTask
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Actor, TaskStatus
from tests.conftest import EXAMPLE_OUTPUT
from tests.contract.support import ALICE, order, report

OPERATOR = Actor("ops@host", "operator")


def failed(service: TaskService) -> UUID:
    """A task whose one attempt failed with an error that is never retried."""
    task_id = service.submit(order()).task_id
    service.record_reports([report(task_id, 1, "started")])
    service.record_reports(
        [report(task_id, 1, "failed", error_type="Declined", error_message="no", retryable=False)]
    )
    assert service.load(task_id).status is TaskStatus.FAILED
    return task_id


def test_a_batch_of_requeues_answers_each_and_records_once(service: TaskService) -> None:
    first, second = failed(service), failed(service)
    pending = service.submit(order()).task_id
    completed = service.submit(order()).task_id
    service.record_reports([report(completed, 1, "started")])
    service.record_reports([report(completed, 1, "completed", output=EXAMPLE_OUTPUT)])
    head = service.recorder.max_notification_id()
    missing = uuid4()

    results = service.execute(
        [RequeueTask(t, OPERATOR, "back") for t in (first, pending, second, completed, missing)]
    )

    assert [type(r) for r in results] == [Outcome, Conflict, Outcome, Conflict, NotFound]
    ok = [r for r in results if isinstance(r, Outcome)]
    assert {(r.task_id, r.status) for r in ok} == {(first, "PENDING"), (second, "PENDING")}
    assert ok[0].position == ok[1].position - 1 == (head or 0) + 1  # one transaction
    conflict = results[1]
    assert isinstance(conflict, Conflict) and conflict.details == {"status": "PENDING"}
    assert "cannot be retried" in conflict.message
    events = [e for _, e in service.read_log(head or 0, 100)]
    assert [type(e) for e in events] == [Task.Requeued, Task.Requeued]
    assert events[0].actor == OPERATOR.as_dict() and events[0].reason == "back"


def test_a_second_requeue_is_a_conflict_and_changes_nothing(service: TaskService) -> None:
    task_id = failed(service)
    [done] = service.execute([RequeueTask(task_id, OPERATOR)])
    assert isinstance(done, Outcome)
    [again] = service.execute([RequeueTask(task_id, OPERATOR)])
    assert isinstance(again, Conflict)
    assert service.load(task_id).version == 4


def test_a_requeue_and_a_cancel_in_one_batch_apply_in_order(service: TaskService) -> None:
    task_id = failed(service)
    requeued, cancelled = service.execute(
        [RequeueTask(task_id, OPERATOR), CancelTask(task_id, ANONYMOUS, reason="oops")]
    )
    assert isinstance(requeued, Outcome) and isinstance(cancelled, Outcome)
    assert service.load(task_id).status is TaskStatus.CANCELLED
    [again] = service.execute([RequeueTask(task_id, ALICE)])
    assert isinstance(again, Outcome)
    task = service.load(task_id)
    assert (task.status, task.attempt, task.awaits_start(2)) == (TaskStatus.PENDING, 1, True)


def test_the_next_attempt_runs_on_any_replica(service: TaskService, replica: TaskService) -> None:
    task_id = failed(service)
    replica.load(task_id)  # the replica has read it: FAILED, as far as it knows
    service.execute([RequeueTask(task_id, OPERATOR)])
    assert replica.record_reports([report(task_id, 1, "started", worker="w-2")]) == 0  # stale
    recorded = replica.record_reports(
        [
            report(task_id, 2, "started", worker="w-2"),
            report(task_id, 2, "completed", worker="w-2", output=EXAMPLE_OUTPUT),
        ]
    )
    assert recorded == 2
    task = service.load(task_id)
    assert (task.status, task.attempt, task.output) == (
        TaskStatus.COMPLETED,
        2,
        EXAMPLE_OUTPUT,
    )
    assert task.error is None
