"""``GET /api/v1/tasks/{taskId}/history``: one task's own events from the event store
(an audit query of one aggregate, not a list query).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath
from msgspec import Struct

from api.http.errors import ERROR
from api.http.paths import parse_task_id
from api.http.schemas import TaskId, Timestamp
from api.runtime import Runtime
from api.security.guards import AUTH_ERRORS, protected
from api.security.principal import Principal
from commands.errors import NotFound
from domain.permissions import Permission
from domain.values import TaskStatus

API_PREFIX = "/api/v1/tasks"


class HistoryEvent(Struct, rename="camel"):
    """One event of a task, oldest first."""

    id: TaskId  # the event's stable id, a UUID (the CloudEvents ``id`` on NATS)
    type: str  # public name: submitted, started, completed, …
    version: int  # the task's version after this event (1, 2, …)
    position: int  # the event store's global position
    time: Timestamp
    actor: dict[str, str]  # who caused it: {"id", "kind"}
    status: TaskStatus | None  # the task's status after this event
    data: dict[str, Any]  # the event's fields, as in the NATS events' ``data``
    prev_hash: str | None  # hash of the previous event (64 zeros for the first)
    hash: str | None  # this event's hash (see docs/events.md, "Tamper evidence")


class TaskHistory(Struct, rename="camel"):
    task_id: TaskId
    events: list[HistoryEvent]


@get(
    f"{API_PREFIX}/{{taskId:str}}/history",
    sync_to_thread=True,
    summary="A task's events, oldest first: type, version, time, actor, data, hash chain",
    responses={404: ERROR, **AUTH_ERRORS},
    **protected(Permission.TASKS_AUDIT),
)
def get_task_history(
    taskId: FromPath[str], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> TaskHistory:
    from projections.audit.history import task_history

    # Another tenant's task is not found, exactly as an unknown id (docs/security.md).
    entries = task_history(runtime.service, parse_task_id(taskId), principal.tenant)
    if entries is None:
        raise NotFound(f"task {taskId} not found", {"field": "taskId"})
    return TaskHistory(
        task_id=str(UUID(taskId)), events=[msgspec.convert(e, HistoryEvent) for e in entries]
    )


ROUTES = [get_task_history]
