"""Domain errors: every rule the aggregate enforces raises one of these."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every rule violation raised by the domain."""


class InvalidValue(DomainError):
    """A value object was given a value outside its domain."""


class IllegalTransition(DomainError):
    """The task's current status does not allow the requested change."""

    def __init__(self, task_id: str, status: str, action: str) -> None:
        super().__init__(f"task {task_id} is {status}: cannot {action}")
        self.task_id = task_id
        self.status = status
        self.action = action


class TaskNotCancellable(IllegalTransition):
    """Cancel was asked of a task that has already finished."""


class StaleResult(IllegalTransition):
    """A worker's report refers to an attempt that is not the current one, or repeats one.

    Results are at-least-once on the wire; the aggregate is where duplicates and
    late reports are recognised, so that they change nothing.
    """
