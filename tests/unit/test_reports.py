"""Unit tests of how a worker report changes a task (commands/reports.py), in particular a
quick attempt's one report that carries its start (``started_at``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from commands.messages import RecordReport
from commands.reports import apply_report
from domain.errors import StaleResult
from domain.task import Task
from domain.values import TaskStatus
from tests.unit.test_task_aggregate import T0, TASK_ID, USER, submitted


def no_violations(task: Task, output: Any) -> list[Any]:
    return []


def report(kind: str, worker: str = "w-1", attempt: int = 1, **kw: Any) -> RecordReport:
    return RecordReport(TASK_ID, attempt, kind, worker, T0 + timedelta(seconds=2), **kw)


def kinds(task: Task) -> list[str]:
    return [type(event).__name__ for event in task.collect_events()]


def test_a_completed_report_with_its_start_records_the_start_then_the_end():
    task = submitted()
    task.collect_events()
    started_at = T0 + timedelta(seconds=1)
    apply_report(task, report("completed", output={"n": 1}, started_at=started_at), no_violations)
    events = task.collect_events()
    assert [type(e).__name__ for e in events] == ["Started", "Completed"]
    started, completed = events
    assert isinstance(started, Task.Started) and isinstance(completed, Task.Completed)
    assert started.timestamp == started_at
    assert started.worker == "w-1" and started.attempt == 1
    assert completed.timestamp == T0 + timedelta(seconds=2)
    assert task.status is TaskStatus.COMPLETED and task.output == {"n": 1}


def test_a_failed_report_with_its_start_schedules_the_retry_after_the_start():
    task = submitted()
    task.collect_events()
    apply_report(
        task,
        report("failed", error_type="Boom", error_message="x", started_at=T0),
        no_violations,
    )
    assert kinds(task) == ["Started", "RetryScheduled"]
    assert task.status is TaskStatus.PENDING and task.attempt == 1


def test_a_start_already_recorded_by_the_same_worker_leaves_only_the_end():
    # This worker ran this very attempt before (JetStream redelivered it to the same
    # worker): its start is on record, the end still counts.
    task = submitted()
    task.start(attempt=1, worker="w-1", at=T0, actor=USER)
    task.collect_events()
    apply_report(task, report("completed", output={}, started_at=T0), no_violations)
    assert kinds(task) == ["Completed"]


def test_the_same_attempt_on_another_worker_records_its_start_too():
    task = submitted()
    task.start(attempt=1, worker="w-1", at=T0, actor=USER)
    task.collect_events()
    apply_report(task, report("completed", worker="w-2", output={}, started_at=T0), no_violations)
    assert kinds(task) == ["Started", "Completed"]


def test_a_report_with_its_start_for_a_cancelled_task_changes_nothing():
    task = submitted()
    task.cancel(reason="stop", force=False, at=T0, actor=USER)
    task.collect_events()
    with pytest.raises(StaleResult):
        apply_report(task, report("completed", output={}, started_at=T0), no_violations)
    assert task.collect_events() == []
    assert task.status is TaskStatus.CANCELLED


def test_a_started_report_ignores_started_at():
    task = submitted()
    task.collect_events()
    apply_report(task, report("started", started_at=T0 - timedelta(days=1)), no_violations)
    (started,) = task.collect_events()
    assert started.timestamp == T0 + timedelta(seconds=2)
