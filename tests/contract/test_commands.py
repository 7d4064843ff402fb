"""Submit, cancel, finish by hand, expire, give up, register definitions and read the log:
the same cases on every event store (tests/contract/conftest.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from commands.catalog import DefinitionCatalog
from commands.errors import Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, FinishManually
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Priority, RetryOverrides, RetryPolicy, TaskStatus
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from tests.contract.conftest import OpenService
from tests.contract.support import ALICE, order, report


def test_submit_records_a_pending_task_with_definition_settings(service: TaskService) -> None:
    outcome = service.submit(order(workflow_instance_id="wf-1", priority=Priority.HIGH))

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
    outcome = service.submit(order(timeout_ms=1234, retry_policy=RetryOverrides(1, 10, 1.5)))
    task = service.load(outcome.task_id)
    assert (task.timeout_ms, task.retry_policy) == (1234, RetryPolicy(1, 10, 1.5))


def test_unknown_definition_is_not_found_and_records_nothing(service: TaskService) -> None:
    with pytest.raises(NotFound, match="no-such-definition"):
        service.submit(order(definition_id="no-such-definition"))
    assert service.recorder.max_notification_id() is None


def test_input_against_schema_lists_every_violation_and_records_nothing(
    service: TaskService,
) -> None:
    bad = {"items": [{"id": "A", "quantity": "two", "price": 1}]}
    with pytest.raises(ValidationFailed) as caught:
        service.submit(order(input=bad))
    violations = caught.value.details["violations"]
    assert {"path": "$", "message": "'orderId' is a required property"} in violations
    assert any(v["path"] == "$.items[0].quantity" for v in violations)
    assert service.recorder.max_notification_id() is None


def test_cancel_pending_then_conflict_then_unknown(service: TaskService) -> None:
    outcome = service.submit(order())
    cancelled = service.cancel(CancelTask(outcome.task_id, ANONYMOUS, reason="no longer needed"))
    assert cancelled.status == "CANCELLED"
    assert service.load(outcome.task_id).cancel_reason == "no longer needed"

    with pytest.raises(Conflict, match="CANCELLED"):
        service.cancel(CancelTask(outcome.task_id, ANONYMOUS))
    with pytest.raises(NotFound):
        service.cancel(CancelTask(uuid4(), ANONYMOUS))


def test_manual_tasks_are_completed_or_failed_by_hand(service: TaskService) -> None:
    refund = {"orderId": "A-1", "amount": 12.5}
    first = service.submit(order(definition_id="approve-refund", input=refund)).task_id
    with pytest.raises(ValidationFailed) as caught:  # output validated like any other
        service.finish_manually(FinishManually(first, ALICE, output={"approved": "yes"}))
    assert caught.value.details["violations"][0]["path"] == "$.approved"
    assert service.load(first).status.value == "PENDING"

    done = service.finish_manually(FinishManually(first, ALICE, output={"approved": True}))
    assert done.status == "COMPLETED"
    assert done.position == service.recorder.max_notification_id()
    assert service.load(first).output == {"approved": True}
    with pytest.raises(Conflict):
        service.finish_manually(FinishManually(first, ALICE, output={"approved": False}))

    second = service.submit(order(definition_id="approve-refund", input=refund)).task_id
    rejected = service.finish_manually(
        FinishManually(second, ALICE, error_type="REJECTED", error_message="not eligible")
    )
    assert rejected.status == "FAILED"
    assert service.load(second).error == {"type": "REJECTED", "message": "not eligible"}

    automated = service.submit(order()).task_id
    with pytest.raises(Conflict, match="MANUAL"):
        service.finish_manually(FinishManually(automated, ALICE, output={}))


def test_an_attempt_without_a_report_is_expired_and_retried(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    service.record_reports([report(task_id, 1, "started")])
    assert service.expire_attempt(task_id, 1, "no report within timeout + grace") is True
    task = service.load(task_id)
    assert task.status.value == "PENDING"
    assert task.error == {"type": "WORKER_LOST", "message": "no report within timeout + grace"}
    assert service.expire_attempt(task_id, 1, "again") is False  # moved on: nothing recorded


def test_work_that_can_never_be_done_is_given_up_once(service: TaskService) -> None:
    task_id = service.submit(order()).task_id
    assert service.awaits_start(task_id, 1)
    assert not service.awaits_start(task_id, 2)
    assert service.give_up(task_id, 1, "UNDELIVERABLE", "delivered too often") is True
    task = service.load(task_id)
    assert task.status is TaskStatus.FAILED
    assert task.error == {"type": "UNDELIVERABLE", "message": "delivered too often"}
    head = service.recorder.max_notification_id()
    assert service.give_up(task_id, 1, "UNDELIVERABLE", "again") is False  # it moved on
    assert service.give_up(uuid4(), 1, "UNDELIVERABLE", "unknown") is False
    assert not service.awaits_start(task_id, 1) and not service.awaits_start(uuid4(), 1)
    assert service.recorder.max_notification_id() == head


def test_an_output_is_held_to_the_definition_revision_its_task_was_submitted_against(
    open_service: OpenService,
) -> None:
    catalog = DefinitionCatalog.load()
    service: TaskService = open_service(catalog=catalog)
    revisions = service.register_definitions(catalog.all())
    assert set(revisions) == {d.id for d in catalog.all()} and set(revisions.values()) == {1}
    head = service.recorder.max_notification_id()
    assert service.register_definitions(catalog.all()) == revisions  # unchanged: nothing new
    assert service.recorder.max_notification_id() == head
    catalog.set_revisions(revisions)
    old_task = service.submit(order()).task_id

    # A replica starts with a stricter outputSchema: revision 2 of the definition.
    definition = catalog.get("calculate-order-total")
    assert definition is not None
    schema = dict(definition.output_schema)
    schema["required"] = [*schema.get("required", []), "currency"]
    stricter = replace(definition, output_schema=schema)
    newer = DefinitionCatalog([stricter if d.id == stricter.id else d for d in catalog.all()])
    replica: TaskService = open_service(catalog=newer)
    newer.set_revisions(replica.register_definitions(newer.all()))
    assert newer.revision(stricter.id) == 2
    new_task = replica.submit(order()).task_id

    done = [report(old_task, 1, "completed", output=EXAMPLE_OUTPUT, started_at=datetime.now(UTC))]
    replica.record_reports(done)
    assert replica.load(old_task).status is TaskStatus.COMPLETED  # held to revision 1
    replica.record_reports([replace(done[0], task_id=new_task)])
    failed = replica.load(new_task)
    assert failed.status is TaskStatus.FAILED  # revision 2 requires a currency
    assert (
        failed.error is not None and "'currency' is a required property" in failed.error["message"]
    )


def test_read_log_gives_decoded_events_in_order(service: TaskService) -> None:
    first = service.submit(order()).task_id
    second = service.submit(order()).task_id
    service.cancel(CancelTask(first, ANONYMOUS))

    log = service.read_log(0, 10)
    assert [type(e) for _, e in log] == [Task.Submitted, Task.Submitted, Task.Cancelled]
    assert [e.originator_id for _, e in log] == [first, second, first]
    positions = [p for p, _ in log]
    assert positions == sorted(positions)
    assert service.read_log(positions[1], 10) == log[2:]
    assert service.follow_log(0, 10) == log  # from this process's memory, the same
