"""MANUAL tasks: a person completes one with an output, or fails it with an error.

Permission ``tasks:complete`` for both. The output is validated against the definition's
``outputSchema`` (422 with every violation); a task that is not MANUAL, or not waiting,
is 409.
"""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.http.errors import ERROR
from api.http.paths import API_PREFIX, parse_task_id
from api.http.schemas import CompleteTaskRequest, FailTaskRequest, FinishTaskResponse
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.guards import AUTH_ERRORS, protected
from api.security.principal import Principal
from commands.messages import FinishManually, Outcome
from domain.permissions import Permission
from domain.values import TaskStatus

RESPONSES = {400: ERROR, 404: ERROR, 409: ERROR, 422: ERROR, **AUTH_ERRORS}


def _answer(outcome: Outcome) -> FinishTaskResponse:
    return FinishTaskResponse(
        id=str(outcome.task_id),
        status=TaskStatus(outcome.status),
        updated_at=api_time(outcome.updated_at),
    )


@post(
    f"{API_PREFIX}/{{taskId:str}}/complete",
    status_code=200,
    sync_to_thread=True,
    summary="Complete a MANUAL task with its output",
    responses=RESPONSES,
    **protected(Permission.TASKS_COMPLETE),
)
def complete_task(
    taskId: FromPath[str],
    data: JSONBody[CompleteTaskRequest],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
) -> FinishTaskResponse:
    command = FinishManually(
        parse_task_id(taskId), principal.actor, output=data.output, tenant=principal.tenant
    )
    return _answer(runtime.finish_manually(command))


@post(
    f"{API_PREFIX}/{{taskId:str}}/fail",
    status_code=200,
    sync_to_thread=True,
    summary="Fail a MANUAL task with an error",
    responses=RESPONSES,
    **protected(Permission.TASKS_COMPLETE),
)
def fail_task(
    taskId: FromPath[str],
    data: JSONBody[FailTaskRequest],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
) -> FinishTaskResponse:
    command = FinishManually(
        parse_task_id(taskId),
        principal.actor,
        error_type=data.error.type,
        error_message=data.error.message,
        tenant=principal.tenant,
    )
    return _answer(runtime.finish_manually(command))


ROUTES = [complete_task, fail_task]
