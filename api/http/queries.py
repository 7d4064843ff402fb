"""Read endpoints: task lists and task definitions (answered from projections)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.http.errors import ERROR
from api.http.schemas import (
    DefinitionList,
    DefinitionResponse,
    DefinitionSummary,
    Pagination,
    TaskList,
    TaskSummary,
)
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.guards import AUTH_ERRORS, protected
from commands.errors import NotFound
from domain.permissions import Permission
from domain.values import TaskStatus, TaskType
from projections.queries import Page

API_PREFIX = "/api/v1/tasks"
MAX_LIMIT = 100

PageNumber = Annotated[int, QueryParameter(ge=1, description="Page number, from 1")]
PageSize = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Items per page, 1-{MAX_LIMIT}")
]


def pagination(page: Page) -> Pagination:
    return Pagination(
        page=page.page,
        limit=page.limit,
        total_items=page.total_items,
        total_pages=page.total_pages,
    )


@get(
    API_PREFIX,
    sync_to_thread=True,
    summary="List tasks",
    responses={400: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_LIST),
)
def list_tasks(
    runtime: NamedDependency[Runtime],
    status: Annotated[TaskStatus | None, QueryParameter()] = None,
    # Python names equal the wire names, so validation errors name the query parameter.
    type: Annotated[TaskType | None, QueryParameter()] = None,
    workflowInstanceId: Annotated[str | None, QueryParameter(min_length=1, max_length=256)] = None,
    page: PageNumber = 1,
    limit: PageSize = 20,
) -> TaskList:
    result = runtime.list_tasks(
        status=status.value if status else None,
        task_type=type.value if type else None,
        workflow_instance_id=workflowInstanceId,
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
    )


@get(
    f"{API_PREFIX}/definitions",
    sync_to_thread=True,
    summary="List task definitions",
    responses={400: ERROR, **AUTH_ERRORS},
    **protected(Permission.DEFINITIONS_LIST),
)
def list_definitions(
    runtime: NamedDependency[Runtime],
    type: Annotated[TaskType | None, QueryParameter()] = None,
    search: Annotated[str | None, QueryParameter(max_length=256)] = None,
    page: PageNumber = 1,
    limit: PageSize = 20,
) -> DefinitionList:
    result = runtime.list_definitions(
        task_type=type.value if type else None, search=search, page=page, limit=limit
    )
    items = [
        DefinitionSummary(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            type=row["type"],
            version=row["version"],
            revision=row["revision"],
        )
        for row in result.items
    ]
    return DefinitionList(items=items, pagination=pagination(result))


@get(
    f"{API_PREFIX}/definitions/{{definition_id:str}}",
    sync_to_thread=True,
    summary="Get a task definition",
    responses={404: ERROR, **AUTH_ERRORS},
    **protected(Permission.DEFINITIONS_READ),
)
def get_definition(
    definition_id: FromPath[str], runtime: NamedDependency[Runtime]
) -> DefinitionResponse:
    row = runtime.get_definition(definition_id)
    if row is None:
        raise NotFound(f"task definition '{definition_id}' not found", {"field": "definitionId"})
    doc = row["document"]
    return DefinitionResponse(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        type=row["type"],
        version=row["version"],
        revision=row["revision"],
        input_schema=doc.get("inputSchema", {}),
        output_schema=doc.get("outputSchema", {}),
        timeout=doc["timeout"],
        retry_policy=doc.get("retryPolicy", {}),
        execution_config=doc.get("executionConfig", {}),
        created_at=api_time(row["created_at"]),
        updated_at=api_time(row["updated_at"]),
    )


ROUTES = [list_tasks, list_definitions, get_definition]
