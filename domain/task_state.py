"""A task as plain values: everything the aggregate knows (for comparisons and views),
and what the events that set many of its fields at once copy onto it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.values import Priority, RetryPolicy, TaskStatus, TaskType

if TYPE_CHECKING:
    from domain.task import Task


def apply_submitted(task: Task, e: Task.Submitted) -> None:
    """A new task: the submission's fields; PENDING, no attempt yet."""
    task.request_hash = e.request_hash
    task.tenant = e.tenant
    task.trace = e.trace
    task.definition_id = e.definition_id
    task.definition_version = e.definition_version
    task.definition_revision = e.definition_revision
    task.task_type = TaskType(e.task_type)
    task.workflow_instance_id = e.workflow_instance_id
    task.input = e.input
    task.priority = Priority(e.priority)
    task.timeout_ms = e.timeout_ms
    task.retry_policy = RetryPolicy.from_dict(e.retry_policy)
    task.execution = e.execution
    task.status = TaskStatus.PENDING
    task.attempt = 0
    task.output = None
    task.error = None
    task.started_at = None
    task.ended_at = None
    task.worker = None
    task.cancel_reason = None
    # A scheduled task's first attempt is due then: nextAttemptAt until it starts.
    due = datetime.fromisoformat(e.scheduled_at) if e.scheduled_at is not None else None
    task.scheduled_at = task.next_attempt_at = due


def apply_started(task: Task, e: Task.Started) -> None:
    """An attempt began on a worker: RUNNING, no end or next attempt yet."""
    task.status = TaskStatus.RUNNING
    task.attempt = e.attempt
    task.worker = e.worker
    task.started_at = e.timestamp
    task.ended_at = None
    task.next_attempt_at = None


def apply_failed(task: Task, e: Task.Failed | Task.RetryScheduled, status: TaskStatus) -> None:
    """An attempt failed: the task's last error (its traceback too, when there is one)."""
    task.status = status
    task.error = {"type": e.error_type, "message": e.error_message}
    if e.traceback is not None:
        task.error["traceback"] = e.traceback
    task.ended_at = e.timestamp
    task.next_attempt_at = None


def apply_cancelled(task: Task, e: Task.Cancelled) -> None:
    """Stopped for good (unless requeued): no next attempt, a scheduled one included."""
    task.status = TaskStatus.CANCELLED
    task.cancel_reason = e.reason
    task.ended_at = e.timestamp
    task.next_attempt_at = None


def apply_requeued(task: Task, e: Task.Requeued) -> None:
    """PENDING again, waiting for attempt ``e.attempt``: the last failure and the cancel
    reason go (the history keeps them); the last attempt's start, end and worker stay
    until the next attempt starts. The retry policy's round begins at this attempt."""
    task.status = TaskStatus.PENDING
    task.error = None
    task.cancel_reason = None
    task.next_attempt_at = None
    task.retry_base = e.attempt - 1
    task.requeued_version = e.originator_version


def task_state(task: Task) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "version": task.version,
        "definition_id": task.definition_id,
        "definition_version": task.definition_version,
        "definition_revision": task.definition_revision,
        "type": task.task_type.value,
        "workflow_instance_id": task.workflow_instance_id,
        "input": task.input,
        "priority": task.priority.value,
        "timeout_ms": task.timeout_ms,
        "retry_policy": task.retry_policy.as_dict(),
        "execution": task.execution,
        "status": task.status.value,
        "attempt": task.attempt,
        "output": task.output,
        "error": task.error,
        "started_at": task.started_at,
        "ended_at": task.ended_at,
        "worker": task.worker,
        "cancel_reason": task.cancel_reason,
        "next_attempt_at": task.next_attempt_at,
        "scheduled_at": task.scheduled_at,
        "tenant": task.tenant,
        "retry_base": task.retry_base,
        "requeued_version": task.requeued_version,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }
