"""``GET /api/v1/tasks/definitions`` and ``…/definitions/{definitionId}``: the task
definitions, answered from their read model.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.http.errors import ERROR
from api.http.paging import PageNumber, PageSize, pagination, refuse_null
from api.http.schemas import (
    DefinitionList,
    DefinitionResponse,
    DefinitionSummary,
)
from api.http.timefmt import api_time
from api.runtime import Runtime
from api.security.guards import AUTH_ERRORS, protected
from commands.errors import NotFound
from domain.permissions import Permission
from domain.values import TaskType

API_PREFIX = "/api/v1/tasks"


@get(
    f"{API_PREFIX}/definitions",
    sync_to_thread=True,
    summary="List task definitions",
    responses={400: ERROR, **AUTH_ERRORS},
    **protected(Permission.DEFINITIONS_LIST),
)
def list_definitions(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    type: Annotated[TaskType | None, QueryParameter()] = None,
    search: Annotated[str | None, QueryParameter(max_length=256)] = None,
    page: PageNumber = 1,
    limit: PageSize = 20,
) -> DefinitionList:
    refuse_null(request, type=type)
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
    f"{API_PREFIX}/definitions/{{definitionId:str}}",
    sync_to_thread=True,
    summary="Get a task definition",
    responses={404: ERROR, **AUTH_ERRORS},
    **protected(Permission.DEFINITIONS_READ),
)
def get_definition(
    definitionId: FromPath[str], runtime: NamedDependency[Runtime]
) -> DefinitionResponse:
    row = runtime.get_definition(definitionId)
    if row is None:
        raise NotFound(f"task definition '{definitionId}' not found", {"field": "definitionId"})
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


ROUTES = [list_definitions, get_definition]
