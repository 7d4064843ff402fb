"""A task as plain values: everything the aggregate knows (for comparisons and views)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.task import Task


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
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }
