"""The Litestar application: thin controllers over the Runtime's command facade and queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from litestar import Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_503_SERVICE_UNAVAILABLE

from api.http.errors import ERROR, EXCEPTION_HANDLERS
from api.http.history import ROUTES as AUDIT_ROUTES
from api.http.manual import ROUTES as MANUAL_ROUTES
from api.http.paths import parse_task_id
from api.http.queries import ROUTES as QUERY_ROUTES
from api.http.schemas import (
    CancelTaskRequest,
    CancelTaskResponse,
    ErrorInfo,
    ExecutionMetadata,
    Health,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskResponse,
)
from api.http.submission import (
    MAX_BULK,
    BulkSubmitRequest,
    BulkSubmitResponse,
    IdempotencyKeyHeader,
    bulk_response,
    submit_response,
)
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.gate import BULK_PATH, Gate
from api.security.guards import (
    AUTH_ERRORS,
    SECURITY_SCHEMES,
    check_permission,
    current_principal,
    protected,
)
from api.security.principal import Principal
from commands.errors import NotFound
from commands.messages import CancelTask, SubmitTask
from domain.permissions import Permission
from domain.values import Actor, RetryPolicy

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/tasks"
REPLAYED = ResponseSpec(
    data_container=SubmitTaskResponse,
    description="An idempotent retry: the task submitted earlier with this Idempotency-Key",
)


def to_command(
    body: SubmitTaskRequest, actor: Actor, idempotency_key: str | None = None
) -> SubmitTask:
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
        actor=actor,
        workflow_instance_id=body.workflow_instance_id,
        priority=body.priority,
        timeout_ms=config.timeout if config is not None else None,
        retry_policy=retry,
        idempotency_key=idempotency_key,
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
        next_attempt_at=api_time(row["next_attempt_at"]) if row["next_attempt_at"] else None,
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
    actor = current_principal(request).actor
    outcome = await runtime.asubmit(to_command(data, actor, idempotency_key))
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
        commands = [to_command(item, principal.actor, item.idempotency_key) for item in data.tasks]
        return bulk_response(runtime.submit_many(commands), api_time)

    return await runtime.awrite(write)


@get(
    f"{API_PREFIX}/{{task_id:str}}",
    sync_to_thread=True,
    summary="Get a task's status and details",
    responses={404: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_READ),
)
def get_task(task_id: FromPath[str], runtime: NamedDependency[Runtime]) -> TaskResponse:
    row = runtime.get_task(parse_task_id(task_id))
    if row is None:
        raise NotFound(f"task {task_id} not found", {"field": "taskId"})
    return to_response(row)


@post(
    f"{API_PREFIX}/{{task_id:str}}/cancel",
    status_code=200,
    summary="Cancel a pending or running task",
    responses={400: ERROR, 404: ERROR, 409: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_CANCEL),
)
async def cancel_task(
    task_id: FromPath[str],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    data: JSONBody[CancelTaskRequest | None] = None,
) -> CancelTaskResponse:
    body = data or CancelTaskRequest()
    outcome = await runtime.acancel(
        CancelTask(
            task_id=parse_task_id(task_id),
            actor=principal.actor,
            reason=body.reason,
            force=body.force,
        )
    )
    return CancelTaskResponse(
        id=str(outcome.task_id), status=outcome.status, updated_at=api_time(outcome.updated_at)
    )


@get("/health", summary="Readiness", include_in_schema=True)
async def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    checks = await anyio.to_thread.run_sync(runtime.health)
    ok = all(checks.values())
    return Response(
        Health(status="ok" if ok else "unavailable", checks=checks),
        status_code=200 if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


def create_app(
    runtime: Runtime, nats_url: str | None, on_started: Callable[[], None] = lambda: None
) -> Litestar:
    """The app over an open runtime (``Runtime.open``); its lifespan starts messaging
    when there is a NATS URL, calls ``on_started`` (``serve`` settles the heap there:
    commands/gc_pause.py) and closes the runtime at the end."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start_security()
        if nats_url:
            await runtime.start_messaging(nats_url)
        on_started()
        try:
            yield
        finally:
            await runtime.stop_messaging()
            await runtime.stop_security()
            await asyncio.to_thread(runtime.close)

    app = Litestar(
        route_handlers=[
            submit_task,
            submit_tasks_bulk,
            get_task,
            cancel_task,
            *MANUAL_ROUTES,
            *QUERY_ROUTES,
            *AUDIT_ROUTES,
            health,
        ],
        dependencies={
            "runtime": Provide(lambda: runtime, use_cache=True, sync_to_thread=False),
            "principal": Provide(current_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=check_permission,  # each route's permission (api/security/guards.py)
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="Task Execution Service",
            version="1.0.0",
            description="Submit, monitor and manage tasks. Errors use one envelope.",
            path="/schema",
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
    )
    # Authentication and rate limits run in front of the router (see api/security/gate.py).
    app.asgi_handler = Gate(app.asgi_handler, lambda: runtime.security)
    return app
