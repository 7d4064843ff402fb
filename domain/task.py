"""The Task aggregate: the rules of a task's life, recorded as events.

Guards live in the public command methods; event ``apply`` bodies only copy
values onto the aggregate, so replaying stored events is deterministic.
Topics are pinned and versioned: they are a persisted contract, so renaming or
moving a class never orphans stored events.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.chain import ChainedAggregate
from domain.definition import TaskDefinition
from domain.errors import IllegalTransition, StaleResult, TaskNotCancellable
from domain.values import Actor, Priority, RetryPolicy, TaskStatus, TaskType

TIMEOUT = "TIMEOUT"  # error type of an attempt stopped at its timeout
OUTPUT_VALIDATION_ERROR = "OUTPUT_VALIDATION_ERROR"  # output broke the outputSchema
WORKER_LOST = "WORKER_LOST"  # no report came back from a started attempt in time
UNPUBLISHABLE = "UNPUBLISHABLE"  # the task's work is larger than the broker takes
UNDELIVERABLE = "UNDELIVERABLE"  # its work was delivered as often as allowed, never done


class NotManual(IllegalTransition):
    """Completing or failing by hand is only for MANUAL tasks."""


class Task(ChainedAggregate):
    """One submitted task and everything that happened to it."""

    TOPIC = "taskexec.task.v1"

    class Event(ChainedAggregate.Event):
        """Base of every task event (never stored itself): who caused it (and, from
        ChainedAggregate.Event, ``prev_hash`` and ``hash``: see domain/chain.py)."""

        actor: dict[str, str]

    class Created(Event, Aggregate.Created):
        """Declared only so that the library does not derive one with an inherited topic."""

        TOPIC = "taskexec.task.created.v1"

    class Submitted(Event, Aggregate.Created):
        TOPIC = "taskexec.task.submitted.v1"
        definition_id: str
        definition_version: str
        task_type: str
        workflow_instance_id: str | None
        input: dict[str, Any]
        priority: str
        timeout_ms: int
        retry_policy: dict[str, Any]
        execution: dict[str, Any]
        definition_revision: int = 0
        # Fingerprint of the request when it carried an Idempotency-Key (else None).
        request_hash: str | None = None

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.request_hash = self.request_hash
            task.definition_id = self.definition_id
            task.definition_version = self.definition_version
            task.definition_revision = self.definition_revision
            task.task_type = TaskType(self.task_type)
            task.workflow_instance_id = self.workflow_instance_id
            task.input = self.input
            task.priority = Priority(self.priority)
            task.timeout_ms = self.timeout_ms
            task.retry_policy = RetryPolicy.from_dict(self.retry_policy)
            task.execution = self.execution
            task.status = TaskStatus.PENDING
            task.attempt = 0
            task.output = None
            task.error = None
            task.started_at = None
            task.ended_at = None
            task.worker = None
            task.cancel_reason = None

    class Started(Event):
        TOPIC = "taskexec.task.started.v1"
        attempt: int
        worker: str

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.RUNNING
            task.attempt = self.attempt
            task.worker = self.worker
            task.started_at = self.timestamp
            task.ended_at = None
            task.next_attempt_at = None

    class Completed(Event):
        TOPIC = "taskexec.task.completed.v1"
        attempt: int
        output: Any

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.COMPLETED
            task.output = self.output
            task.ended_at = self.timestamp

    class Failed(Event):
        """The task failed for good (no retry left, or an error that is not retried)."""

        TOPIC = "taskexec.task.failed.v1"
        attempt: int
        error_type: str
        error_message: str
        output: Any = None  # what the attempt returned, when that was the problem
        retryable: bool = False

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.FAILED
            task.error = {"type": self.error_type, "message": self.error_message}
            task.ended_at = self.timestamp
            task.next_attempt_at = None

    class RetryScheduled(Event):
        """An attempt failed and another one is due at ``retry_at`` (RFC 3339, UTC)."""

        TOPIC = "taskexec.task.retry-scheduled.v1"
        attempt: int
        error_type: str
        error_message: str
        retry_at: str
        output: Any = None

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.PENDING
            task.error = {"type": self.error_type, "message": self.error_message}
            task.ended_at = self.timestamp
            task.next_attempt_at = datetime.fromisoformat(self.retry_at)

    class TimedOut(Event):
        """The last attempt ran past the task's timeout."""

        TOPIC = "taskexec.task.timed-out.v1"
        attempt: int
        error_message: str

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.TIMED_OUT
            task.error = {"type": TIMEOUT, "message": self.error_message}
            task.ended_at = self.timestamp
            task.next_attempt_at = None

    class Cancelled(Event):
        TOPIC = "taskexec.task.cancelled.v1"
        reason: str | None
        force: bool

        def apply(self, aggregate: Any) -> None:
            task: Task = aggregate
            task.status = TaskStatus.CANCELLED
            task.cancel_reason = self.reason
            task.ended_at = self.timestamp
            task.next_attempt_at = None

    def __init__(self) -> None:
        # Placeholders, so that every attribute is declared once with its type;
        # Submitted.apply sets the real values straight after.
        self.request_hash: str | None = None
        self.definition_id: str = ""
        self.definition_version: str = ""
        self.definition_revision: int = 0
        self.task_type: TaskType = TaskType.AUTOMATED
        self.workflow_instance_id: str | None = None
        self.input: dict[str, Any] = {}
        self.priority: Priority = Priority.MEDIUM
        self.timeout_ms: int = 0
        self.retry_policy: RetryPolicy = RetryPolicy()
        self.execution: dict[str, Any] = {}
        self.status: TaskStatus = TaskStatus.PENDING
        self.attempt: int = 0
        self.output: Any = None
        self.error: dict[str, str] | None = None
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.worker: str | None = None
        self.cancel_reason: str | None = None
        self.next_attempt_at: datetime | None = None

    @classmethod
    def submit(
        cls,
        *,
        task_id: UUID,
        at: datetime,
        actor: Actor,
        definition: TaskDefinition,
        input: dict[str, Any],
        workflow_instance_id: str | None = None,
        priority: Priority = Priority.MEDIUM,
        timeout_ms: int | None = None,
        retry_policy: RetryPolicy | None = None,
        definition_revision: int = 0,
        request_hash: str | None = None,
    ) -> Task:
        """A new PENDING task of ``definition``; per-task settings override the definition's."""
        execution = {
            key: definition.execution_config[key]
            for key in ("handler", "endpoint", "isolation")
            if key in definition.execution_config
        }
        return cls._create(
            cls.Submitted,
            id=task_id,
            timestamp=at,
            actor=actor.as_dict(),
            definition_id=definition.id,
            definition_version=definition.version,
            task_type=definition.type.value,
            workflow_instance_id=workflow_instance_id,
            input=input,
            priority=priority.value,
            timeout_ms=timeout_ms if timeout_ms is not None else definition.timeout_ms,
            retry_policy=(retry_policy or definition.retry_policy).as_dict(),
            execution=execution,
            definition_revision=definition_revision,
            request_hash=request_hash,
        )

    @property
    def created_at(self) -> datetime:
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        return self.modified_on

    def start(self, *, attempt: int, worker: str, at: datetime, actor: Actor) -> None:
        """A worker began ``attempt``. Repeats and late reports raise StaleResult.

        The same attempt starting on another worker is recorded too: the first worker
        vanished and JetStream redelivered its work (handlers run at least once).
        """
        first_start = self.awaits_start(attempt)
        redelivered = (
            self.status is TaskStatus.RUNNING and attempt == self.attempt and worker != self.worker
        )
        if self.task_type is TaskType.MANUAL or not (first_start or redelivered):
            raise StaleResult(str(self.id), self.status, f"start attempt {attempt}")
        self.trigger_event(
            self.Started, timestamp=at, actor=actor.as_dict(), attempt=attempt, worker=worker
        )

    def awaits_start(self, attempt: int) -> bool:
        """True while ``attempt`` is the task's next attempt and has not started."""
        return self.status is TaskStatus.PENDING and attempt == self.attempt + 1

    def complete(self, *, attempt: int, output: Any, at: datetime, actor: Actor) -> None:
        """The running ``attempt`` produced ``output``."""
        self._check_running(attempt, "complete")
        self.trigger_event(
            self.Completed, timestamp=at, actor=actor.as_dict(), attempt=attempt, output=output
        )

    def fail(
        self,
        *,
        attempt: int,
        error_type: str,
        error_message: str,
        at: datetime,
        actor: Actor,
        retryable: bool = True,
        output: Any = None,
    ) -> None:
        """The running ``attempt`` failed with an error of ``error_type``.

        Retried per the retry policy (``RetryScheduled``) when ``retryable`` and the type
        is not listed as non-retryable and retries are left; otherwise the task ends:
        TIMED_OUT when the last attempt timed out, else FAILED.
        """
        self._check_running(attempt, "fail")
        common = {"timestamp": at, "actor": actor.as_dict(), "attempt": attempt}
        if self.retry_policy.allows_retry(attempt, error_type, retryable):
            retry_at = at + timedelta(milliseconds=self.retry_policy.delay_ms(attempt))
            self.trigger_event(
                self.RetryScheduled,
                **common,
                error_type=error_type,
                error_message=error_message,
                retry_at=retry_at.isoformat(),
                output=output,
            )
        elif error_type == TIMEOUT:
            self.trigger_event(self.TimedOut, **common, error_message=error_message)
        else:
            self.trigger_event(
                self.Failed,
                **common,
                error_type=error_type,
                error_message=error_message,
                output=output,
                retryable=retryable,
            )

    def give_up(
        self, *, attempt: int, error_type: str, error_message: str, at: datetime, actor: Actor
    ) -> None:
        """``attempt``'s work can never be done (it was delivered as often as allowed, it
        cannot be read, or it is too large to publish): the task ends FAILED, never
        retried. StaleResult if the task no longer waits on that attempt."""
        running = self.status is TaskStatus.RUNNING and attempt == self.attempt
        if self.task_type is TaskType.MANUAL or not (running or self.awaits_start(attempt)):
            raise StaleResult(str(self.id), self.status, f"give up attempt {attempt}")
        self.trigger_event(
            self.Failed,
            timestamp=at,
            actor=actor.as_dict(),
            attempt=attempt,
            error_type=error_type,
            error_message=error_message,
        )

    def complete_manually(self, *, output: Any, at: datetime, actor: Actor) -> None:
        """A person (or system) finished a MANUAL task with ``output``."""
        self._check_manual("complete")
        self.trigger_event(
            self.Completed, timestamp=at, actor=actor.as_dict(), attempt=1, output=output
        )

    def fail_manually(
        self, *, error_type: str, error_message: str, at: datetime, actor: Actor
    ) -> None:
        """A person (or system) declared a MANUAL task failed. Never retried."""
        self._check_manual("fail")
        self.trigger_event(
            self.Failed,
            timestamp=at,
            actor=actor.as_dict(),
            attempt=1,
            error_type=error_type,
            error_message=error_message,
        )

    def _check_manual(self, action: str) -> None:
        if self.task_type is not TaskType.MANUAL:
            raise NotManual(str(self.id), self.status, f"{action} it by hand (only MANUAL tasks)")
        if self.status is not TaskStatus.PENDING:
            raise IllegalTransition(str(self.id), self.status, action)

    def cancel(self, *, reason: str | None, force: bool, at: datetime, actor: Actor) -> None:
        """Stop the task for good. Only a task that has not finished can be cancelled."""
        if self.status.is_terminal:
            raise TaskNotCancellable(str(self.id), self.status, "cancel")
        self.trigger_event(
            self.Cancelled, timestamp=at, actor=actor.as_dict(), reason=reason, force=force
        )

    def _check_running(self, attempt: int, action: str) -> None:
        if self.status is not TaskStatus.RUNNING or attempt != self.attempt:
            raise StaleResult(str(self.id), self.status, f"{action} attempt {attempt}")

    def state(self) -> dict[str, Any]:
        """Everything the aggregate knows, as plain values (for comparisons and views)."""
        return {
            "id": str(self.id),
            "version": self.version,
            "definition_id": self.definition_id,
            "definition_version": self.definition_version,
            "definition_revision": self.definition_revision,
            "type": self.task_type.value,
            "workflow_instance_id": self.workflow_instance_id,
            "input": self.input,
            "priority": self.priority.value,
            "timeout_ms": self.timeout_ms,
            "retry_policy": self.retry_policy.as_dict(),
            "execution": self.execution,
            "status": self.status.value,
            "attempt": self.attempt,
            "output": self.output,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "worker": self.worker,
            "cancel_reason": self.cancel_reason,
            "next_attempt_at": self.next_attempt_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


__all__ = [
    "OUTPUT_VALIDATION_ERROR",
    "TIMEOUT",
    "UNDELIVERABLE",
    "UNPUBLISHABLE",
    "WORKER_LOST",
    "IllegalTransition",
    "NotManual",
    "Task",
]
