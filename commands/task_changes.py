"""One task changed outside the group commit: finished by hand (a MANUAL task), given up
(its work can never be done), or an attempt expired (its worker went silent).

Each loads the task, asks the aggregate, and saves; the aggregate's refusal is the answer
(a Conflict for a person, False for the system's own checks).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Recording

from commands.catalog import as_details
from commands.errors import Conflict, NotFound, ValidationFailed
from commands.messages import FinishManually, Outcome
from commands.reports import OutputCheck
from domain.errors import IllegalTransition, StaleResult
from domain.task import WORKER_LOST, Task
from domain.tenancy import visible
from domain.values import SYSTEM

Clock = Callable[[], datetime]


class TaskStore(Protocol):
    """What these changes need of the service."""

    def load(self, task_id: UUID) -> Task: ...

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]: ...


def outcome(task: Task, position: int) -> Outcome:
    """The answer to a command that left ``task`` as it is, at log position ``position``."""
    return Outcome(
        task_id=task.id,
        status=task.status.value,
        created_at=task.created_at,
        updated_at=task.updated_at,
        position=position,
    )


def finish_manually(
    store: TaskStore, cmd: FinishManually, clock: Clock, check_output: OutputCheck
) -> Outcome:
    """Complete (with a validated output) or fail a MANUAL task by hand; another tenant's
    task is not found."""
    task = store.load(cmd.task_id)
    if not visible(task.tenant, cmd.tenant):
        raise NotFound(f"task {cmd.task_id} not found", {"field": "taskId"})
    at = clock()
    try:
        if cmd.error_type is None:
            task.complete_manually(output=cmd.output, at=at, actor=cmd.actor)
        else:
            task.fail_manually(
                error_type=cmd.error_type, error_message=cmd.error_message, at=at, actor=cmd.actor
            )
    except IllegalTransition as exc:
        raise Conflict(str(exc), {"status": exc.status}) from None
    if cmd.error_type is None and (violations := check_output(task, cmd.output)):
        # Refused before saving: the changed aggregate is dropped, nothing is recorded.
        raise ValidationFailed(
            "output does not match the task definition's outputSchema",
            {"field": "output", "violations": as_details(violations)},
        )
    return outcome(task, store.save(task)[-1].notification.id)


def give_up(
    store: TaskStore, task_id: UUID, attempt: int, error_type: str, reason: str, clock: Clock
) -> bool:
    """``attempt``'s work can never be done: the task ends FAILED with ``error_type``
    if it still waits on that attempt. False if it moved on (or is unknown)."""
    for _ in range(3):
        try:
            task = store.load(task_id)
            task.give_up(
                attempt=attempt,
                error_type=error_type,
                error_message=reason,
                at=clock(),
                actor=SYSTEM,
            )
        except (NotFound, StaleResult):
            return False
        try:
            store.save(task)
        except IntegrityError:  # a report came meanwhile: judge again
            continue
        return True
    raise RuntimeError(f"task {task_id} kept changing; not given up")


def expire_attempt(
    store: TaskStore, task_id: UUID, attempt: int, reason: str, clock: Clock
) -> bool:
    """No report came back from a started attempt in time: count it as a failure
    (``WORKER_LOST``, retried per policy). False if the task moved on meanwhile."""
    task = store.load(task_id)
    try:
        task.fail(
            attempt=attempt, error_type=WORKER_LOST, error_message=reason, at=clock(), actor=SYSTEM
        )
    except StaleResult:
        return False
    try:
        store.save(task)
    except IntegrityError:  # a report arrived at the same moment: it wins
        return False
    return True
