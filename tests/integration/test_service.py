"""TaskService against real event stores (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from commands.errors import Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, FinishManually, RecordReport, SubmitTask
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Actor, Priority, RetryPolicy
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

USER = Actor("alice", "jwt")


def submit(service: TaskService, **overrides: object) -> SubmitTask:
    fields: dict[str, object] = {
        "definition_id": "calculate-order-total",
        "input": EXAMPLE_INPUT,
        "actor": ANONYMOUS,
    }
    fields.update(overrides)
    return SubmitTask(**fields)  # type: ignore[arg-type]


def report(task_id, attempt, kind, **fields) -> RecordReport:
    return RecordReport(
        task_id=task_id, attempt=attempt, kind=kind, worker="w-1", at=datetime.now(UTC), **fields
    )


def test_submit_records_a_pending_task_with_definition_settings(service: TaskService) -> None:
    outcome = service.submit(submit(service, workflow_instance_id="wf-1", priority=Priority.HIGH))

    task = service.load(outcome.task_id)
    assert outcome.status == "PENDING"
    assert outcome.position == service.recorder.max_notification_id()
    assert task.definition_id == "calculate-order-total"
    assert task.definition_version == "1.2.0"
    assert task.workflow_instance_id == "wf-1"
    assert task.priority is Priority.HIGH
    assert task.timeout_ms == 60_000
    assert task.retry_policy == RetryPolicy(3, 60_000, 2.0)
    assert task.input == EXAMPLE_INPUT


def test_per_task_settings_override_the_definition(service: TaskService) -> None:
    outcome = service.submit(submit(service, timeout_ms=1234, retry_policy=RetryPolicy(1, 10, 1.5)))
    task = service.load(outcome.task_id)
    assert (task.timeout_ms, task.retry_policy) == (1234, RetryPolicy(1, 10, 1.5))


def test_unknown_definition_is_not_found_and_records_nothing(service: TaskService) -> None:
    with pytest.raises(NotFound, match="no-such-definition"):
        service.submit(submit(service, definition_id="no-such-definition"))
    assert service.recorder.max_notification_id() is None


def test_input_against_schema_lists_every_violation_and_records_nothing(
    service: TaskService,
) -> None:
    bad = {"items": [{"id": "A", "quantity": "two", "price": 1}]}
    with pytest.raises(ValidationFailed) as caught:
        service.submit(submit(service, input=bad))
    violations = caught.value.details["violations"]
    assert {"path": "$", "message": "'orderId' is a required property"} in violations
    assert any(v["path"] == "$.items[0].quantity" for v in violations)
    assert service.recorder.max_notification_id() is None


def test_cancel_pending_then_conflict_then_unknown(service: TaskService) -> None:
    outcome = service.submit(submit(service))
    cancelled = service.cancel(CancelTask(outcome.task_id, ANONYMOUS, reason="no longer needed"))
    assert cancelled.status == "CANCELLED"
    assert service.load(outcome.task_id).cancel_reason == "no longer needed"

    with pytest.raises(Conflict, match="CANCELLED"):
        service.cancel(CancelTask(outcome.task_id, ANONYMOUS))
    with pytest.raises(NotFound):
        service.cancel(CancelTask(uuid4(), ANONYMOUS))


def test_reports_are_recorded_once_however_often_they_come(service: TaskService) -> None:
    task_id = service.submit(submit(service)).task_id
    batch = [
        report(task_id, 1, "started"),
        report(task_id, 1, "completed", output=EXAMPLE_OUTPUT),
    ]
    assert service.record_reports(batch) == 2
    # The same batch redelivered (crash before the ack): every report is stale, no events.
    assert service.record_reports(batch) == 0
    # In another order (redelivered out of order): still nothing new.
    assert service.record_reports(batch[::-1]) == 0

    task = service.load(task_id)
    assert task.status.value == "COMPLETED"
    assert task.output == EXAMPLE_OUTPUT
    assert task.version == 3


def test_failed_report_keeps_error_type_and_message(service: TaskService) -> None:
    task_id = service.submit(submit(service)).task_id
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
    task_id = service.submit(submit(service)).task_id
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
    task_id = service.submit(submit(service)).task_id
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


def test_manual_tasks_are_completed_or_failed_by_hand(service: TaskService) -> None:
    refund = {"orderId": "A-1", "amount": 12.5}
    first = service.submit(submit(service, definition_id="approve-refund", input=refund)).task_id
    with pytest.raises(ValidationFailed) as caught:  # output validated like any other
        service.finish_manually(FinishManually(first, USER, output={"approved": "yes"}))
    assert caught.value.details["violations"][0]["path"] == "$.approved"
    assert service.load(first).status.value == "PENDING"

    done = service.finish_manually(FinishManually(first, USER, output={"approved": True}))
    assert done.status == "COMPLETED"
    assert service.load(first).output == {"approved": True}
    with pytest.raises(Conflict):
        service.finish_manually(FinishManually(first, USER, output={"approved": False}))

    second = service.submit(submit(service, definition_id="approve-refund", input=refund)).task_id
    rejected = service.finish_manually(
        FinishManually(second, USER, error_type="REJECTED", error_message="not eligible")
    )
    assert rejected.status == "FAILED"
    assert service.load(second).error == {"type": "REJECTED", "message": "not eligible"}

    automated = service.submit(submit(service)).task_id
    with pytest.raises(Conflict, match="MANUAL"):
        service.finish_manually(FinishManually(automated, USER, output={}))


def test_an_attempt_without_a_report_is_expired_and_retried(service: TaskService) -> None:
    task_id = service.submit(submit(service)).task_id
    service.record_reports([report(task_id, 1, "started")])
    assert service.expire_attempt(task_id, 1, "no report within timeout + grace") is True
    task = service.load(task_id)
    assert task.status.value == "PENDING"
    assert task.error == {"type": "WORKER_LOST", "message": "no report within timeout + grace"}
    assert service.expire_attempt(task_id, 1, "again") is False  # moved on: nothing recorded


def test_reports_after_cancel_and_for_unknown_tasks_change_nothing(service: TaskService) -> None:
    task_id = service.submit(submit(service)).task_id
    service.cancel(CancelTask(task_id, ANONYMOUS))
    recorded = service.record_reports(
        [report(task_id, 1, "started"), report(uuid4(), 1, "started")],
    )
    assert recorded == 0
    assert service.load(task_id).status.value == "CANCELLED"


def test_read_log_gives_decoded_events_in_order(service: TaskService) -> None:
    first = service.submit(submit(service)).task_id
    second = service.submit(submit(service)).task_id
    service.cancel(CancelTask(first, ANONYMOUS))

    log = service.read_log(0, 10)
    assert [type(e) for _, e in log] == [Task.Submitted, Task.Submitted, Task.Cancelled]
    assert [e.originator_id for _, e in log] == [first, second, first]
    positions = [p for p, _ in log]
    assert positions == sorted(positions)
    assert service.read_log(positions[1], 10) == log[2:]
