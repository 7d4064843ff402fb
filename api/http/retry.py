"""Retrying finished tasks: ``POST /api/v1/tasks/{taskId}/retry`` requeues a FAILED,
TIMED_OUT or CANCELLED task (permission ``tasks:retry``), and the list's ``errorType``
filter (beyond the spec) finds the failures of one kind to retry together. Many at once:
``taskexec tasks retry`` (api/cli/tasks.py). What a retry does: docs/execution.md.
"""

from __future__ import annotations

from typing import Annotated

from litestar import post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.http.errors import ERROR
from api.http.paths import API_PREFIX, parse_task_id
from api.http.schemas import RetryTaskRequest, RetryTaskResponse
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.guards import AUTH_ERRORS, protected
from api.security.principal import Principal
from commands.messages import RequeueTask
from domain.permissions import Permission
from domain.values import TaskStatus

ErrorTypeFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=256,
        description="Beyond the spec: only tasks whose last failure (`error.type`) is of "
        "this type, such as `TIMEOUT` or `ConnectionError`",
    ),
]


@post(
    f"{API_PREFIX}/{{taskId:str}}/retry",
    status_code=200,
    summary="Retry a FAILED, TIMED_OUT or CANCELLED task",
    responses={400: ERROR, 404: ERROR, 409: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_RETRY),
)
async def retry_task(
    taskId: FromPath[str],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    data: JSONBody[RetryTaskRequest | None] = None,
) -> RetryTaskResponse:
    """PENDING again: its next attempt runs under its retry policy afresh; 409 for a task
    that is PENDING, RUNNING or COMPLETED."""
    body = data or RetryTaskRequest()
    command = RequeueTask(
        task_id=parse_task_id(taskId),
        actor=principal.actor,
        reason=body.reason,
        tenant=principal.tenant,
    )
    outcome = await runtime.arequeue(command)
    return RetryTaskResponse(
        id=str(outcome.task_id),
        status=TaskStatus(outcome.status),
        updated_at=api_time(outcome.updated_at),
    )
