"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from domain.schedule import MAX_DELAY_SECONDS
from domain.values import Priority, TaskStatus, TaskType

NonEmpty = Annotated[str, Meta(min_length=1, max_length=256)]
# Declared formats of answers (the OpenAPI document; generated clients parse them).
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
TaskId = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]


class RetryPolicyIn(Struct, rename="camel", forbid_unknown_fields=True):
    """A task's own retry policy, merged with its definition's field by field: a field
    given wins, a field left out (or null) keeps the definition's value. A given
    nonRetryableErrors replaces the definition's list."""

    # The merge: domain.values.RetryPolicy.overridden_by (docs/execution.md, Retries).

    max_retries: Annotated[int, Meta(ge=0, le=100)] | None = None
    retry_interval: Annotated[int, Meta(ge=0, le=86_400_000)] | None = None
    backoff_multiplier: Annotated[float, Meta(ge=1, le=100)] | None = None
    # At most 30 days (domain.values.MAX_DELAY_MS): no delay is ever longer anyway.
    max_interval: Annotated[int, Meta(ge=0, le=2_592_000_000)] | None = None
    non_retryable_errors: Annotated[list[NonEmpty], Meta(max_length=100)] | None = None


class ExecutionConfigIn(Struct, rename="camel", forbid_unknown_fields=True):
    timeout: Annotated[int, Meta(gt=0, le=86_400_000)] | None = None
    retry_policy: RetryPolicyIn | None = None


ScheduledAt = Annotated[
    str,
    Meta(
        max_length=64,
        extra_json_schema={"format": "date-time"},
        description=(
            "Beyond the spec: the first attempt starts at this time (RFC 3339 with an "
            "offset); a past time means now. Not with delaySeconds."
        ),
    ),
]
DelaySeconds = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_DELAY_SECONDS,
        description=(
            "Beyond the spec: the first attempt starts this many seconds after the submit "
            "is recorded. Not with scheduledAt."
        ),
    ),
]


class SubmitTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    task_definition_id: NonEmpty
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    workflow_instance_id: NonEmpty | None = None
    priority: Priority = Priority.MEDIUM
    execution_config: ExecutionConfigIn | None = None
    # Beyond the spec: a scheduled task (docs/api.md, "Scheduled tasks"); one or the other.
    scheduled_at: ScheduledAt | None = None
    delay_seconds: DelaySeconds | None = None


class SubmitTaskResponse(Struct, rename="camel"):
    id: TaskId
    status: TaskStatus
    created_at: Timestamp


class CancelTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=1024)] | None = None
    force: bool = False


class CancelTaskResponse(Struct, rename="camel"):
    id: TaskId
    status: TaskStatus
    updated_at: Timestamp


class RetryTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=1024)] | None = None


class RetryTaskResponse(Struct, rename="camel"):
    id: TaskId
    status: TaskStatus
    updated_at: Timestamp


class ErrorInfo(Struct, rename="camel"):
    type: str
    message: str


class TaskError(Struct, rename="camel"):
    """A task's last failure: the spec's ``type`` and ``message``; ``details`` (beyond the
    spec) is an object or null: ``traceback``, the failing handler's Python traceback
    (at most 8192 bytes of UTF-8, its end kept), when there is one."""

    type: str
    message: str
    details: dict[str, Any] | None = None


class ExecutionMetadata(Struct, rename="camel"):
    start_time: Timestamp | None
    end_time: Timestamp | None
    duration: int | None
    execution_environment: str | None


class TaskResponse(Struct, rename="camel"):
    id: TaskId
    task_definition_id: str
    definition_version: str
    workflow_instance_id: str | None
    status: TaskStatus
    type: TaskType
    priority: Priority
    input: dict[str, Any]
    output: Any
    error: TaskError | None
    attempts: int
    next_attempt_at: Timestamp | None
    # Beyond the spec: a scheduled task's time (its first attempt's), else null.
    scheduled_at: Timestamp | None
    execution_metadata: ExecutionMetadata
    created_at: Timestamp
    updated_at: Timestamp
    # Beyond the spec: the submitter's tenant (docs/security.md, "Tenants"), else null.
    tenant: str | None = None


class ErrorBody(Struct):
    """An error. ``code``: VALIDATION_ERROR, NOT_FOUND, UNAUTHORIZED, FORBIDDEN, CONFLICT,
    METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE, RATE_LIMITED, SERVICE_UNAVAILABLE or
    INTERNAL_ERROR. ``details`` is an object or null: ``field`` and ``issue`` name the first
    problem, ``violations`` lists them all where there can be several; other keys as each
    error documents (``recorded``, ``retryAfter``, ``required``, ``limit``, ...)."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorEnvelope(Struct):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


class Health(Struct):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool]


class Live(Struct):
    status: Literal["ok"]


class Pagination(Struct, rename="camel"):
    page: int
    limit: int
    total_items: int
    total_pages: int


class TaskSummary(Struct, rename="camel"):
    id: TaskId
    task_definition_id: str
    status: TaskStatus
    type: TaskType
    workflow_instance_id: str | None
    created_at: Timestamp
    updated_at: Timestamp
    scheduled_at: Timestamp | None  # beyond the spec: a scheduled task's time, else null
    tenant: str | None = None  # beyond the spec: the submitter's tenant, else null


class TaskList(Struct):
    items: list[TaskSummary]
    pagination: Pagination


class DefinitionSummary(Struct, rename="camel"):
    id: str
    name: str
    description: str
    type: TaskType
    version: str
    revision: int


class DefinitionList(Struct):
    items: list[DefinitionSummary]
    pagination: Pagination


class DefinitionResponse(Struct, rename="camel"):
    id: str
    name: str
    description: str
    type: TaskType
    version: str
    revision: int
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout: int
    retry_policy: dict[str, Any]
    execution_config: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class CompleteTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    output: Any


class FailTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    error: ErrorInfo


class FinishTaskResponse(Struct, rename="camel"):
    id: TaskId
    status: TaskStatus
    updated_at: Timestamp
