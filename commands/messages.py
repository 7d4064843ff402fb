"""Commands (imperative) accepted by TaskService, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.values import Actor, Priority, RetryOverrides


@dataclass(frozen=True)
class SubmitTask:
    definition_id: str
    input: dict[str, Any]
    actor: Actor
    workflow_instance_id: str | None = None
    priority: Priority = Priority.MEDIUM
    timeout_ms: int | None = None
    # The task's own retry settings, merged over the definition's policy field by field.
    retry_policy: RetryOverrides | None = None
    # Same key and body again: the original task; same key, other body: refused.
    idempotency_key: str | None = None
    # The request's trace context (W3C ``traceparent``/``tracestate``; workers/tracing.py),
    # stored with the task; None: tracing off.
    trace: dict[str, str] | None = None
    # A scheduled task (docs/api.md, "Scheduled tasks"): one of the two as the request
    # gave it; the moment is decided with the submit's time (domain/schedule.py).
    scheduled_at: datetime | None = None
    delay_seconds: int | None = None
    # The submitter's tenant: the task's (domain/tenancy.py); None: no tenant.
    tenant: str | None = None


@dataclass(frozen=True)
class CancelTask:
    task_id: UUID
    actor: Actor
    reason: str | None = None
    force: bool = False
    trace: dict[str, str] | None = None  # the request's trace context: its commit's parent
    tenant: str | None = None  # the caller's: another tenant's task is not found


@dataclass(frozen=True)
class RequeueTask:
    """Run a FAILED, TIMED_OUT or CANCELLED task again (``POST …/retry``, ``taskexec tasks
    retry``)."""

    task_id: UUID
    actor: Actor
    reason: str | None = None
    trace: dict[str, str] | None = None  # the request's trace context: its commit's parent
    tenant: str | None = None  # the caller's: another tenant's task is not found


@dataclass(frozen=True)
class RecordReport:
    """What a worker reported about one attempt (decoded from TASK_RESULTS)."""

    task_id: UUID
    attempt: int
    kind: str  # "started" | "completed" | "failed"
    worker: str
    at: datetime
    output: Any = None
    error_type: str = ""
    error_message: str = ""
    retryable: bool = True
    started_at: datetime | None = None  # set: the attempt's start, not reported apart
    traceback: str | None = None  # a failed handler's (bounded again by the aggregate)


@dataclass(frozen=True)
class FinishManually:
    """A person completes (``output``) or fails (``error_type``) a MANUAL task."""

    task_id: UUID
    actor: Actor
    output: Any = None
    error_type: str | None = None
    error_message: str = ""
    tenant: str | None = None  # the caller's: another tenant's task is not found


@dataclass(frozen=True)
class Outcome:
    """A command's result: the task's new status, when, and the log position to wait for."""

    task_id: UUID
    status: str
    created_at: datetime
    updated_at: datetime
    position: int
    replayed: bool = False  # an idempotent retry: the task existed already
