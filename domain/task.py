"""The Task aggregate: the rules of a task's life, recorded as events.

Commands check the rules (domain/task_rules.py) and record events; ``apply`` bodies only
copy values onto the aggregate, so replay is deterministic. Topics are pinned, versioned
and persisted: renaming or moving a class never orphans stored events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import task_rules as rules
from domain import task_state as state
from domain.chain import ChainedAggregate
from domain.definition import TaskDefinition
from domain.error_types import OUTPUT_VALIDATION_ERROR as OUTPUT_VALIDATION_ERROR
from domain.error_types import TIMEOUT as TIMEOUT
from domain.error_types import UNDELIVERABLE as UNDELIVERABLE
from domain.error_types import UNPUBLISHABLE as UNPUBLISHABLE
from domain.error_types import WORKER_LOST as WORKER_LOST
from domain.errors import IllegalTransition as IllegalTransition
from domain.task_rules import NotManual as NotManual
from domain.values import Actor, Priority, RetryOverrides, RetryPolicy, TaskStatus, TaskType


class Task(ChainedAggregate):
    """One submitted task and everything that happened to it."""

    TOPIC = "taskexec.task.v1"

    class Event(ChainedAggregate.Event):
        """Base of every task event (never stored itself): who caused it (and, from
        ChainedAggregate.Event, ``prev_hash`` and ``hash``: see domain/chain.py)."""

        actor: dict[str, str]

    class Created(Event, Aggregate.Created):
        TOPIC = "taskexec.task.created.v1"  # declared: no topic derived, none inherited

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
        # The submit's W3C trace context, with tracing on (docs/operations.md, "Traces").
        trace: dict[str, str] | None = None
        # When a scheduled task's first attempt is due (RFC 3339; None: at once, as before).
        scheduled_at: str | None = None
        tenant: str | None = None  # the submitter's (domain/tenancy.py); None: none

        def apply(self, aggregate: Any) -> None:
            state.apply_submitted(aggregate, self)

    class Started(Event):
        TOPIC = "taskexec.task.started.v1"
        attempt: int
        worker: str

        def apply(self, aggregate: Any) -> None:
            state.apply_started(aggregate, self)

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
        traceback: str | None = None  # the handler's, bounded (domain/tracebacks.py)

        def apply(self, aggregate: Any) -> None:
            state.apply_failed(aggregate, self, TaskStatus.FAILED)

    class RetryScheduled(Event):
        """An attempt failed and another one is due at ``retry_at`` (RFC 3339, UTC)."""

        TOPIC = "taskexec.task.retry-scheduled.v1"
        attempt: int
        error_type: str
        error_message: str
        retry_at: str
        output: Any = None
        traceback: str | None = None  # the handler's, bounded (domain/tracebacks.py)

        def apply(self, aggregate: Any) -> None:
            state.apply_failed(aggregate, self, TaskStatus.PENDING)
            aggregate.next_attempt_at = datetime.fromisoformat(self.retry_at)

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
            state.apply_cancelled(aggregate, self)

    class Requeued(Event):
        """A FAILED, TIMED_OUT or CANCELLED task is to run again: ``attempt`` is the next
        one, and the retry policy counts afresh from it (docs/execution.md)."""

        TOPIC = "taskexec.task.requeued.v1"
        attempt: int
        reason: str | None

        def apply(self, aggregate: Any) -> None:
            state.apply_requeued(aggregate, self)

    def __init__(self) -> None:
        # Placeholders declaring each attribute's type; Submitted.apply sets the values.
        self.request_hash: str | None = None
        self.trace: dict[str, str] | None = None
        self.scheduled_at: datetime | None = None
        self.tenant: str | None = None
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
        self.retry_base: int = 0  # attempts before the retry policy's current round
        self.requeued_version: int = 0  # the version of the last Requeued (0: none)

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
        retry_policy: RetryOverrides | None = None,
        definition_revision: int = 0,
        request_hash: str | None = None,
        trace: dict[str, str] | None = None,
        scheduled_at: datetime | None = None,
        tenant: str | None = None,
    ) -> Task:
        """A new PENDING task of ``definition``, its settings over the definition's; not due
        before ``scheduled_at`` (domain/schedule.py); ``tenant``: its submitter's, checked."""
        return cls._create(
            cls.Submitted,
            id=task_id,
            timestamp=at,
            actor=actor.as_dict(),
            **rules.from_definition(definition, timeout_ms, retry_policy),
            workflow_instance_id=workflow_instance_id,
            input=input,
            priority=priority.value,
            definition_revision=definition_revision,
            request_hash=request_hash,
            trace=trace,
            scheduled_at=scheduled_at.isoformat() if scheduled_at is not None else None,
            tenant=tenant,
        )

    @property
    def created_at(self) -> datetime:
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        return self.modified_on

    def start(self, *, attempt: int, worker: str, at: datetime, actor: Actor) -> None:
        """A worker began ``attempt`` (also on another worker, when its work was
        redelivered). Repeats and late reports raise StaleResult."""
        rules.check_start(self, attempt, worker)
        self._record(self.Started, at, actor, attempt=attempt, worker=worker)

    def awaits_start(self, attempt: int) -> bool:
        """True while ``attempt`` is the task's next attempt and has not started."""
        return rules.awaits_start(self, attempt)

    def complete(self, *, attempt: int, output: Any, at: datetime, actor: Actor) -> None:
        """The running ``attempt`` produced ``output``."""
        rules.check_running(self, attempt, "complete")
        self._record(self.Completed, at, actor, attempt=attempt, output=output)

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
        traceback: str | None = None,
    ) -> None:
        """The running ``attempt`` failed with an error of ``error_type`` (and the
        handler's ``traceback``, kept bounded): retried per the retry policy
        (``RetryScheduled``) if ``retry_due`` allows; otherwise the task ends, TIMED_OUT
        when the last attempt timed out, else FAILED."""
        rules.check_running(self, attempt, "fail")
        due = rules.retry_due(self, attempt, error_type, retryable, at)
        error = rules.failure(attempt, error_type, error_message, traceback)
        if due is not None:
            self._record(self.RetryScheduled, at, actor, **error, retry_at=due, output=output)
        elif error_type == TIMEOUT:
            self._record(self.TimedOut, at, actor, attempt=attempt, error_message=error_message)
        else:
            self._record(self.Failed, at, actor, **error, output=output, retryable=retryable)

    def give_up(
        self, *, attempt: int, error_type: str, error_message: str, at: datetime, actor: Actor
    ) -> None:
        """``attempt``'s work can never be done (delivered as often as allowed, unreadable,
        too large): the task ends FAILED, never retried. StaleResult if it is not awaited."""
        rules.check_give_up(self, attempt)
        error = {"error_type": error_type, "error_message": error_message}
        self._record(self.Failed, at, actor, attempt=attempt, **error)

    def complete_manually(self, *, output: Any, at: datetime, actor: Actor) -> None:
        """A person (or system) finished a MANUAL task with ``output``."""
        rules.check_manual(self, "complete")
        self._record(self.Completed, at, actor, attempt=1, output=output)

    def fail_manually(
        self, *, error_type: str, error_message: str, at: datetime, actor: Actor
    ) -> None:
        """A person (or system) declared a MANUAL task failed. Never retried."""
        rules.check_manual(self, "fail")
        error = {"error_type": error_type, "error_message": error_message}
        self._record(self.Failed, at, actor, attempt=1, **error)

    def cancel(self, *, reason: str | None, force: bool, at: datetime, actor: Actor) -> None:
        """Stop the task for good. Only a task that has not finished can be cancelled."""
        rules.check_cancellable(self)
        self._record(self.Cancelled, at, actor, reason=reason, force=force)

    def requeue(self, *, reason: str | None, at: datetime, actor: Actor) -> None:
        """Run a FAILED, TIMED_OUT or CANCELLED task again, from its next attempt and
        under its retry policy afresh; IllegalTransition in any other status."""
        rules.check_requeueable(self)
        self._record(self.Requeued, at, actor, attempt=self.attempt + 1, reason=reason)

    def _record(self, event_class: Any, at: datetime, actor: Actor, **fields: Any) -> None:
        self.trigger_event(event_class, timestamp=at, actor=actor.as_dict(), **fields)

    def state(self) -> dict[str, Any]:
        """Everything the aggregate knows, as plain values (for comparisons and views)."""
        return state.task_state(self)
