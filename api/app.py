"""The Litestar application: thin controllers over the Runtime's command facade and queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from litestar import Litestar, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_503_SERVICE_UNAVAILABLE

from api.errors import EXCEPTION_HANDLERS
from api.runtime import Runtime
from api.schemas import (
    CancelTaskRequest,
    CancelTaskResponse,
    ErrorEnvelope,
    ErrorInfo,
    ExecutionMetadata,
    Health,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskResponse,
)
from commands.errors import NotFound
from commands.messages import CancelTask, SubmitTask
from domain.values import ANONYMOUS, RetryPolicy

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/tasks"
ERROR = ResponseSpec(data_container=ErrorEnvelope, description="An error in the spec's envelope")


def api_time(text_or_dt: Any) -> str:
    """RFC 3339 UTC with milliseconds: ``2023-07-15T14:30:00.000Z``."""
    if isinstance(text_or_dt, str):
        return text_or_dt[:23] + "Z"
    return str(text_or_dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z")


def parse_task_id(task_id: str) -> UUID:
    try:
        return UUID(task_id)
    except ValueError:
        raise NotFound(f"task {task_id} not found", {"field": "taskId"}) from None


def to_command(body: SubmitTaskRequest) -> SubmitTask:
    config = body.execution_config
    retry = None
    if config is not None and config.retry_policy is not None:
        retry = RetryPolicy(
            max_retries=config.retry_policy.max_retries,
            retry_interval_ms=config.retry_policy.retry_interval,
            backoff_multiplier=config.retry_policy.backoff_multiplier,
        )
    return SubmitTask(
        definition_id=body.task_definition_id,
        input=body.input,
        actor=ANONYMOUS,
        workflow_instance_id=body.workflow_instance_id,
        priority=body.priority,
        timeout_ms=config.timeout if config is not None else None,
        retry_policy=retry,
    )


def to_response(row: dict[str, Any]) -> TaskResponse:
    error = row["error"]
    return TaskResponse(
        id=row["id"],
        task_definition_id=row["definition_id"],
        definition_version=row["definition_version"],
        workflow_instance_id=row["workflow_instance_id"],
        status=row["status"],
        type=row["type"],
        priority=row["priority"],
        input=row["input"],
        output=row["output"],
        error=ErrorInfo(type=error["type"], message=error["message"]) if error else None,
        attempts=row["attempts"],
        execution_metadata=ExecutionMetadata(
            start_time=api_time(row["start_time"]) if row["start_time"] else None,
            end_time=api_time(row["end_time"]) if row["end_time"] else None,
            duration=row["duration_ms"],
            execution_environment=row["execution_environment"],
        ),
        created_at=api_time(row["created_at"]),
        updated_at=api_time(row["updated_at"]),
    )


@post(
    API_PREFIX,
    status_code=HTTP_201_CREATED,
    sync_to_thread=True,
    summary="Submit a task",
    responses={400: ERROR, 404: ERROR, 422: ERROR},
)
def submit_task(
    data: JSONBody[SubmitTaskRequest], runtime: NamedDependency[Runtime]
) -> Response[SubmitTaskResponse]:
    outcome = runtime.submit(to_command(data))
    task_id = str(outcome.task_id)
    return Response(
        SubmitTaskResponse(
            id=task_id, status=outcome.status, created_at=api_time(outcome.created_at)
        ),
        status_code=HTTP_201_CREATED,
        headers={"Location": f"{API_PREFIX}/{task_id}"},
    )


@get(
    f"{API_PREFIX}/{{task_id:str}}",
    sync_to_thread=True,
    summary="Get a task's status and details",
    responses={404: ERROR},
)
def get_task(task_id: FromPath[str], runtime: NamedDependency[Runtime]) -> TaskResponse:
    row = runtime.get_task(parse_task_id(task_id))
    if row is None:
        raise NotFound(f"task {task_id} not found", {"field": "taskId"})
    return to_response(row)


@post(
    f"{API_PREFIX}/{{task_id:str}}/cancel",
    status_code=200,
    sync_to_thread=True,
    summary="Cancel a pending or running task",
    responses={400: ERROR, 404: ERROR, 409: ERROR},
)
def cancel_task(
    task_id: FromPath[str],
    runtime: NamedDependency[Runtime],
    data: JSONBody[CancelTaskRequest | None] = None,
) -> CancelTaskResponse:
    body = data or CancelTaskRequest()
    outcome = runtime.cancel(
        CancelTask(
            task_id=parse_task_id(task_id), actor=ANONYMOUS, reason=body.reason, force=body.force
        )
    )
    return CancelTaskResponse(
        id=str(outcome.task_id), status=outcome.status, updated_at=api_time(outcome.updated_at)
    )


@get("/health", sync_to_thread=True, summary="Readiness", include_in_schema=True)
def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    checks = runtime.health()
    ok = all(checks.values())
    return Response(
        Health(status="ok" if ok else "unavailable", checks=checks),
        status_code=200 if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


def create_app(runtime: Runtime, nats_url: str | None) -> Litestar:
    """The app; its lifespan opens the runtime and, with a NATS URL, starts messaging."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.open)
        if nats_url:
            await runtime.start_messaging(nats_url)
        try:
            yield
        finally:
            await runtime.stop_messaging()
            await asyncio.to_thread(runtime.close)

    return Litestar(
        route_handlers=[submit_task, get_task, cancel_task, health],
        dependencies={"runtime": Provide(lambda: runtime, use_cache=True, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="Task Execution Service",
            version="1.0.0",
            description="Submit, monitor and manage tasks. Errors use one envelope.",
            path="/schema",
        ),
    )
