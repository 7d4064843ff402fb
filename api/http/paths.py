"""Path pieces shared by the controllers."""

from __future__ import annotations

from uuid import UUID

from commands.errors import NotFound

API_PREFIX = "/api/v1/tasks"


def parse_task_id(task_id: str) -> UUID:
    """A task id from a path; anything that is not a UUID names no task (404)."""
    try:
        return UUID(task_id)
    except ValueError:
        raise NotFound(f"task {task_id} not found", {"field": "taskId"}) from None
