"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from domain.values import Priority

NonEmpty = Annotated[str, Meta(min_length=1, max_length=256)]


class RetryPolicyIn(Struct, rename="camel", forbid_unknown_fields=True):
    max_retries: Annotated[int, Meta(ge=0, le=100)] = 0
    retry_interval: Annotated[int, Meta(ge=0, le=86_400_000)] = 60_000
    backoff_multiplier: Annotated[float, Meta(ge=1, le=100)] = 2.0


class ExecutionConfigIn(Struct, rename="camel", forbid_unknown_fields=True):
    timeout: Annotated[int, Meta(gt=0, le=86_400_000)] | None = None
    retry_policy: RetryPolicyIn | None = None


class SubmitTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    task_definition_id: NonEmpty
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    workflow_instance_id: NonEmpty | None = None
    priority: Priority = Priority.MEDIUM
    execution_config: ExecutionConfigIn | None = None


class SubmitTaskResponse(Struct, rename="camel"):
    id: str
    status: str
    created_at: str


class CancelTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=1024)] | None = None
    force: bool = False


class CancelTaskResponse(Struct, rename="camel"):
    id: str
    status: str
    updated_at: str


class ErrorInfo(Struct, rename="camel"):
    type: str
    message: str


class ExecutionMetadata(Struct, rename="camel"):
    start_time: str | None
    end_time: str | None
    duration: int | None
    execution_environment: str | None


class TaskResponse(Struct, rename="camel"):
    id: str
    task_definition_id: str
    definition_version: str
    workflow_instance_id: str | None
    status: str
    type: str
    priority: str
    input: dict[str, Any]
    output: Any
    error: ErrorInfo | None
    attempts: int
    next_attempt_at: str | None
    execution_metadata: ExecutionMetadata
    created_at: str
    updated_at: str


class ErrorBody(Struct):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(Struct):
    error: ErrorBody


class Health(Struct):
    status: str
    checks: dict[str, bool]


class Pagination(Struct, rename="camel"):
    page: int
    limit: int
    total_items: int
    total_pages: int


class TaskSummary(Struct, rename="camel"):
    id: str
    task_definition_id: str
    status: str
    type: str
    workflow_instance_id: str | None
    created_at: str
    updated_at: str


class TaskList(Struct):
    items: list[TaskSummary]
    pagination: Pagination


class DefinitionSummary(Struct, rename="camel"):
    id: str
    name: str
    description: str
    type: str
    version: str
    revision: int


class DefinitionList(Struct):
    items: list[DefinitionSummary]
    pagination: Pagination


class DefinitionResponse(Struct, rename="camel"):
    id: str
    name: str
    description: str
    type: str
    version: str
    revision: int
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout: int
    retry_policy: dict[str, Any]
    execution_config: dict[str, Any]
    created_at: str
    updated_at: str


class CompleteTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    output: Any


class FailTaskRequest(Struct, rename="camel", forbid_unknown_fields=True):
    error: ErrorInfo


class FinishTaskResponse(Struct, rename="camel"):
    id: str
    status: str
    updated_at: str
