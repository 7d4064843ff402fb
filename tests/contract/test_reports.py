"""Worker reports applied by their identity (task, attempt, kind), never by a stream
position: redelivered, out of order, or to another replica, each changes the task once.
The same cases on every event store (tests/contract/conftest.py); the task cache's kept
copies under replicas: tests/integration/test_task_cache.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from commands.messages import CancelTask, RecordReport
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, TaskStatus
from tests.conftest import EXAMPLE_OUTPUT
from tests.contract.support import order, report


def kinds(service: TaskService, task_id: UUID) -> list[str]:
    return [type(e).__name__ for e in service.events.get(task_id)]


def test_reports_are_recorded_once_however_often_they_come(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    batch = [report(task_id, 1, "started"), report(task_id, 1, "completed", output=EXAMPLE_OUTPUT)]
    assert service.record_reports(batch) == 2
    # The same batch redelivered (crash before the ack): every report is stale, no events.
    assert service.record_reports(batch) == 0
    # In another order (redelivered out of order): still nothing new.
    assert service.record_reports(batch[::-1]) == 0

    task = service.load(task_id)
    assert task.status.value == "COMPLETED"
    assert task.output == EXAMPLE_OUTPUT
    assert task.version == 3


def test_an_end_that_overtakes_its_start_is_applied_and_the_late_start_changes_nothing(
    service: TaskService,
) -> None:
    task_id = service.submit(order()).task_id
    started = report(task_id, 1, "started")
    assert service.record_reports([report(task_id, 1, "completed", output=EXAMPLE_OUTPUT)]) == 2
    assert service.record_reports([started]) == 0  # redelivered after the end
    assert kinds(service, task_id) == ["Submitted", "Started", "Completed"]


def test_reports_redelivered_to_another_replica_change_nothing(
    service: TaskService, replica: TaskService
) -> None:
    task_id = service.submit(order()).task_id
    batch = [report(task_id, 1, "started"), report(task_id, 1, "completed", output=EXAMPLE_OUTPUT)]
    assert service.record_reports(batch) == 2
    assert replica.record_reports(batch[::-1]) == 0  # its consumer got them again
    assert kinds(replica, task_id) == ["Submitted", "Started", "Completed"]


def test_a_report_redelivered_after_a_later_one_was_recorded_is_applied(
    service: TaskService,
) -> None:
    first, second = service.submit(order()).task_id, service.submit(order()).task_id
    assert service.record_reports([report(second, 1, "started")]) == 1
    assert service.record_reports([report(first, 1, "started")]) == 1  # an earlier message
    assert service.load(first).status is TaskStatus.RUNNING


def test_failed_report_keeps_error_type_and_message(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    service.record_reports(
        [
            report(task_id, 1, "started"),
            report(
                task_id, 1, "failed", error_type="ValueError", error_message="bad", retryable=False
            ),
        ],
    )
    task = service.load(task_id)
    assert task.status.value == "FAILED"
    assert task.error == {"type": "ValueError", "message": "bad"}


def test_a_retryable_failure_schedules_the_next_attempt(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    failed_at = datetime(2030, 1, 1, tzinfo=UTC)
    service.record_reports(
        [
            report(task_id, 1, "started"),
            RecordReport(task_id, 1, "failed", "w-1", failed_at, error_type="E", error_message="m"),
        ],
    )
    task = service.load(task_id)
    assert task.status.value == "PENDING"
    assert task.attempt == 1
    assert task.next_attempt_at == failed_at + timedelta(seconds=60)  # the definition's policy


def test_an_output_breaking_the_schema_fails_and_is_kept(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    bad = {"total": "lots"}
    service.record_reports(
        [report(task_id, 1, "started"), report(task_id, 1, "completed", output=bad)],
    )
    task = service.load(task_id)
    assert task.status.value == "FAILED"  # never retried
    assert task.error is not None
    assert task.error["type"] == "OUTPUT_VALIDATION_ERROR"
    assert "'subtotal' is a required property" in task.error["message"]
    failed = service.read_log(0, 100)[-1][1]
    assert isinstance(failed, Task.Failed)
    assert failed.output == bad


def test_reports_after_cancel_and_for_unknown_tasks_change_nothing(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    service.cancel(CancelTask(task_id, ANONYMOUS))
    recorded = service.record_reports(
        [report(task_id, 1, "started"), report(uuid4(), 1, "started")],
    )
    assert recorded == 0
    assert service.load(task_id).status.value == "CANCELLED"
