"""``/api/v1/tasks``: submit (one, or in bulk), get, list and cancel tasks, and retry one
(api/http/retry.py); thin controllers over the Runtime's command facade and queries.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.http.errors import ERROR
from api.http.paging import PageNumber, PageSize, pagination, refuse_null
from api.http.paths import parse_task_id
from api.http.retry import ErrorTypeFilter, retry_task
from api.http.schemas import (
    CancelTaskRequest,
    CancelTaskResponse,
    ExecutionMetadata,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskError,
    TaskList,
    TaskResponse,
    TaskSummary,
)
from api.http.submission import (
    MAX_BULK,
    BulkSubmitRequest,
    BulkSubmitResponse,
    IdempotencyKeyHeader,
    bulk_response,
    check_schedule,
    submit_response,
)
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.gate import BULK_PATH
from api.security.guards import (
    AUTH_ERRORS,
    current_principal,
    protected,
)
from api.security.principal import Principal
from commands.errors import NotFound
from commands.messages import CancelTask, SubmitTask
from domain.permissions import Permission
from domain.values import RetryOverrides, TaskStatus, TaskType

API_PREFIX = "/api/v1/tasks"


REPLAYED = ResponseSpec(
    data_container=SubmitTaskResponse,
    description="An idempotent retry: the task submitted earlier with this Idempotency-Key",
)


def to_command(
    body: SubmitTaskRequest,
    principal: Principal,
    idempotency_key: str | None = None,
    field: str = "",
) -> SubmitTask:
    """The command of one submit body (``field``: where it is in a bulk body); the task
    is in the principal's tenant."""
    scheduled_at = check_schedule(body, field)
    config = body.execution_config
    retry = None
    if config is not None and config.retry_policy is not None:
        given = config.retry_policy
        names = given.non_retryable_errors
        retry = RetryOverrides(
            max_retries=given.max_retries,
            retry_interval_ms=given.retry_interval,
            backoff_multiplier=given.backoff_multiplier,
            max_interval_ms=given.max_interval,
            non_retryable_errors=tuple(names) if names is not None else None,
        )
    return SubmitTask(
        definition_id=body.task_definition_id,
        input=body.input,
        actor=principal.actor,
        workflow_instance_id=body.workflow_instance_id,
        priority=body.priority,
        timeout_ms=config.timeout if config is not None else None,
        retry_policy=retry,
        idempotency_key=idempotency_key,
        scheduled_at=scheduled_at,
        delay_seconds=body.delay_seconds,
        tenant=principal.tenant,
    )


def task_error(error: dict[str, Any]) -> TaskError:
    """The read model's ``error`` as the API shows it (the traceback under ``details``)."""
    trace = error.get("traceback")
    details = {"traceback": trace} if trace is not None else None
    return TaskError(type=error["type"], message=error["message"], details=details)


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
        error=task_error(error) if error else None,
        attempts=row["attempts"],
        next_attempt_at=api_time(row["next_attempt_at"]) if row["next_attempt_at"] else None,
        scheduled_at=api_time(row["scheduled_at"]) if row["scheduled_at"] else None,
        execution_metadata=ExecutionMetadata(
            start_time=api_time(row["start_time"]) if row["start_time"] else None,
            end_time=api_time(row["end_time"]) if row["end_time"] else None,
            duration=row["duration_ms"],
            execution_environment=row["execution_environment"],
        ),
        created_at=api_time(row["created_at"]),
        updated_at=api_time(row["updated_at"]),
        tenant=row["tenant"],
    )


@post(
    API_PREFIX,
    status_code=HTTP_201_CREATED,
    summary="Submit a task",
    responses={
        200: REPLAYED,
        400: ERROR,
        404: ERROR,
        413: ERROR,
        422: ERROR,
        503: ERROR,
        **AUTH_ERRORS,
    },
    **protected(Permission.TASKS_EXECUTE),
)
async def submit_task(
    data: JSONBody[SubmitTaskRequest],
    runtime: NamedDependency[Runtime],
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response[SubmitTaskResponse]:
    # The hottest endpoint: the principal is read from the request rather than injected,
    # since two dependencies make Litestar resolve them in an anyio task group per request.
    # Async: the command waits for its group commit and the read model on the event loop,
    # holding no thread.
    principal = current_principal(request)
    outcome = await runtime.asubmit(to_command(data, principal, idempotency_key))
    task_id = str(outcome.task_id)
    headers = {"Location": f"{API_PREFIX}/{task_id}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        submit_response(outcome, api_time),
        status_code=HTTP_200_OK if outcome.replayed else HTTP_201_CREATED,
        headers=headers,
    )


@post(
    BULK_PATH,
    status_code=HTTP_200_OK,
    summary=f"Submit up to {MAX_BULK} tasks in one transaction, with a result per task",
    responses={400: ERROR, 503: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_EXECUTE),
)
async def submit_tasks_bulk(
    data: JSONBody[BulkSubmitRequest],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
) -> BulkSubmitResponse:
    # The transaction runs on a thread; the request waits on the event loop, so that an
    # unreachable database is answered 503 within about a second (api/availability.py).
    def write() -> BulkSubmitResponse:
        commands = [
            to_command(item, principal, item.idempotency_key, f"tasks[{index}].")
            for index, item in enumerate(data.tasks)
        ]
        return bulk_response(runtime.submit_many(commands), api_time)

    return await runtime.awrite(write)


@get(
    f"{API_PREFIX}/{{taskId:str}}",
    sync_to_thread=True,
    summary="Get a task's status and details",
    responses={404: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_READ),
)
def get_task(
    taskId: FromPath[str], runtime: NamedDependency[Runtime], request: Request[Any, Any, Any]
) -> TaskResponse:
    # Another tenant's task is not found, exactly as an unknown id (docs/security.md).
    row = runtime.get_task(parse_task_id(taskId), current_principal(request).tenant)
    if row is None:
        raise NotFound(f"task {taskId} not found", {"field": "taskId"})
    return to_response(row)


@post(
    f"{API_PREFIX}/{{taskId:str}}/cancel",
    status_code=200,
    summary="Cancel a pending or running task",
    responses={400: ERROR, 404: ERROR, 409: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_CANCEL),
)
async def cancel_task(
    taskId: FromPath[str],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    data: JSONBody[CancelTaskRequest | None] = None,
) -> CancelTaskResponse:
    body = data or CancelTaskRequest()
    outcome = await runtime.acancel(
        CancelTask(
            task_id=parse_task_id(taskId),
            actor=principal.actor,
            reason=body.reason,
            force=body.force,
            tenant=principal.tenant,
        )
    )
    return CancelTaskResponse(
        id=str(outcome.task_id),
        status=TaskStatus(outcome.status),
        updated_at=api_time(outcome.updated_at),
    )


@get(
    API_PREFIX,
    sync_to_thread=True,
    summary="List tasks",
    responses={400: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_LIST),
)
def list_tasks(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    status: Annotated[TaskStatus | None, QueryParameter()] = None,
    # Python names equal the wire names, so validation errors name the query parameter.
    type: Annotated[TaskType | None, QueryParameter()] = None,
    workflowInstanceId: Annotated[str | None, QueryParameter(min_length=1, max_length=256)] = None,
    errorType: ErrorTypeFilter = None,
    page: PageNumber = 1,
    limit: PageSize = 20,
) -> TaskList:
    refuse_null(request, status=status, type=type)
    result = runtime.list_tasks(
        tenant=current_principal(request).tenant,
        status=status.value if status else None,
        task_type=type.value if type else None,
        workflow_instance_id=workflowInstanceId,
        error_type=errorType,
        page=page,
        limit=limit,
    )
    return TaskList(items=[_summary(row) for row in result.items], pagination=pagination(result))


def _summary(row: dict[str, Any]) -> TaskSummary:
    return TaskSummary(
        id=row["id"],
        task_definition_id=row["definition_id"],
        status=row["status"],
        type=row["type"],
        workflow_instance_id=row["workflow_instance_id"],
        created_at=api_time(row["created_at"]),
        updated_at=api_time(row["updated_at"]),
        scheduled_at=api_time(row["scheduled_at"]) if row["scheduled_at"] else None,
        tenant=row["tenant"],
    )


ROUTES = [submit_task, submit_tasks_bulk, get_task, cancel_task, retry_task, list_tasks]
