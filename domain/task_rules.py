"""The rules a task's commands check before anything is recorded (domain/task.py records
what they allow): which attempt may start, end or be given up, which task may be finished
by hand, cancelled or requeued, and when a failed attempt is tried again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from domain.definition import TaskDefinition
from domain.errors import IllegalTransition, StaleResult, TaskNotCancellable
from domain.tracebacks import bounded_traceback
from domain.values import RetryOverrides, RetryPolicy, TaskStatus, TaskType


class NotManual(IllegalTransition):
    """Completing or failing by hand is only for MANUAL tasks."""


class TaskFacts(Protocol):
    """What the rules read of a task (domain.task.Task)."""

    @property
    def id(self) -> UUID: ...

    @property
    def status(self) -> TaskStatus: ...

    @property
    def task_type(self) -> TaskType: ...

    @property
    def attempt(self) -> int: ...

    @property
    def worker(self) -> str | None: ...

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def retry_base(self) -> int: ...


def awaits_start(task: TaskFacts, attempt: int) -> bool:
    """True while ``attempt`` is the task's next attempt and has not started."""
    return task.status is TaskStatus.PENDING and attempt == task.attempt + 1


def check_start(task: TaskFacts, attempt: int, worker: str) -> None:
    """StaleResult unless ``attempt`` may start on ``worker``: the next attempt, or the
    running one on another worker (the first vanished and JetStream redelivered its work:
    handlers run at least once). Repeats and late reports are stale."""
    redelivered = (
        task.status is TaskStatus.RUNNING and attempt == task.attempt and worker != task.worker
    )
    if task.task_type is TaskType.MANUAL or not (awaits_start(task, attempt) or redelivered):
        raise StaleResult(str(task.id), task.status, f"start attempt {attempt}")


def check_running(task: TaskFacts, attempt: int, action: str) -> None:
    """StaleResult unless ``attempt`` is the one running."""
    if task.status is not TaskStatus.RUNNING or attempt != task.attempt:
        raise StaleResult(str(task.id), task.status, f"{action} attempt {attempt}")


def check_give_up(task: TaskFacts, attempt: int) -> None:
    """StaleResult unless the task still waits on ``attempt`` (running, or next to start)."""
    running = task.status is TaskStatus.RUNNING and attempt == task.attempt
    if task.task_type is TaskType.MANUAL or not (running or awaits_start(task, attempt)):
        raise StaleResult(str(task.id), task.status, f"give up attempt {attempt}")


def check_manual(task: TaskFacts, action: str) -> None:
    """NotManual unless a MANUAL task; IllegalTransition unless it is still PENDING."""
    if task.task_type is not TaskType.MANUAL:
        raise NotManual(str(task.id), task.status, f"{action} it by hand (only MANUAL tasks)")
    if task.status is not TaskStatus.PENDING:
        raise IllegalTransition(str(task.id), task.status, action)


def check_cancellable(task: TaskFacts) -> None:
    """TaskNotCancellable once the task has finished."""
    if task.status.is_terminal:
        raise TaskNotCancellable(str(task.id), task.status, "cancel")


# What a requeue may start again: a task that ended without its output.
REQUEUEABLE = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED})


def check_requeueable(task: TaskFacts) -> None:
    """IllegalTransition unless the task ended without success (FAILED, TIMED_OUT,
    CANCELLED): PENDING and RUNNING are on their way already, COMPLETED is done."""
    if task.status not in REQUEUEABLE:
        raise IllegalTransition(str(task.id), task.status, "retry it")


def retry_due(
    task: TaskFacts, attempt: int, error_type: str, retryable: bool, at: datetime
) -> str | None:
    """``retry_at`` of the task's policy, ``attempt`` counted within the policy's round
    (a requeue starts a new one: ``retry_base`` attempts came before it)."""
    return retry_at(task.retry_policy, attempt - task.retry_base, error_type, retryable, at)


def retry_at(
    policy: RetryPolicy, attempt: int, error_type: str, retryable: bool, at: datetime
) -> str | None:
    """When the next attempt is due (ISO 8601) after ``attempt`` failed at ``at``; None when
    the failure ends the task (not ``retryable``, a non-retryable type, no retry left).
    ``attempt`` counts within the policy's round: from 1 at the submission, and again
    from 1 at the first attempt after a requeue."""
    if not policy.allows_retry(attempt, error_type, retryable):
        return None
    return (at + timedelta(milliseconds=policy.delay_ms(attempt))).isoformat()


def from_definition(
    definition: TaskDefinition, timeout_ms: int | None, retry: RetryOverrides | None
) -> dict[str, Any]:
    """A submitted task's fields taken from its definition: a task's own timeout replaces
    the definition's; its own retry settings are merged field by field over the
    definition's policy (RetryPolicy.overridden_by), and the merged policy is what the
    Submitted event records; the worker gets the execution config it needs (an
    INTEGRATION task's ``auth`` too: the names of its credentials, never their values;
    its requests, memory limit and security level: domain/resources.py)."""
    keys: tuple[str, ...] = ("handler", "endpoint", "isolation", "executor", "maxConcurrency")
    if definition.type is TaskType.INTEGRATION:
        keys += ("auth",)
    return {
        "definition_id": definition.id,
        "definition_version": definition.version,
        "task_type": definition.type.value,
        "timeout_ms": capped(
            timeout_ms if timeout_ms is not None else definition.timeout_ms,
            definition.resources.timeout_ms,
        ),
        "retry_policy": definition.retry_policy.overridden_by(retry).as_dict(),
        "execution": {
            **{
                key: definition.execution_config[key]
                for key in keys
                if key in definition.execution_config
            },
            **definition.resources.execution(),
        },
    }


def failure(
    attempt: int, error_type: str, error_message: str, traceback: str | None
) -> dict[str, Any]:
    """The fields of a failed attempt's event; the traceback (if any) bounded to
    TRACEBACK_LIMIT bytes whatever the worker sent (domain/tracebacks.py)."""
    fields: dict[str, Any] = {
        "attempt": attempt,
        "error_type": error_type,
        "error_message": error_message,
    }
    if traceback is not None:
        fields["traceback"] = bounded_traceback(traceback)
    return fields


def capped(timeout_ms: int, limit_ms: int | None) -> int:
    """A task's timeout under its definition's ``resourceRequirements.timeoutSeconds``: the
    lower wins (domain/resources.py)."""
    return timeout_ms if limit_ms is None else min(timeout_ms, limit_ms)
