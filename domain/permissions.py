"""Permissions: what a principal may do. The spec's table plus this service's own endpoints.

A persisted contract: API keys record permission names in their events, and external auth
services put them in tokens. Add names; never rename or reuse one.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    TASKS_EXECUTE = "tasks:execute"  # POST /tasks, POST /tasks/bulk
    TASKS_READ = "tasks:read"  # GET /tasks/{id}
    TASKS_CANCEL = "tasks:cancel"  # POST /tasks/{id}/cancel
    TASKS_LIST = "tasks:list"  # GET /tasks
    TASKS_COMPLETE = "tasks:complete"  # POST /tasks/{id}/complete (MANUAL tasks)
    TASKS_AUDIT = "tasks:audit"  # GET /tasks/{id}/history
    TASKS_RETRY = "tasks:retry"  # POST /tasks/{id}/retry (FAILED, TIMED_OUT, CANCELLED)
    DEFINITIONS_LIST = "tasks:definitions:list"  # GET /definitions
    DEFINITIONS_READ = "tasks:definitions:read"  # GET /definitions/{id}
    METRICS_READ = "metrics:read"  # GET /metrics (Prometheus scrapes)


ALL_PERMISSIONS: frozenset[str] = frozenset(p.value for p in Permission)


def unknown_permissions(names: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The names in ``names`` that are not permissions of this service, sorted."""
    return sorted(set(names) - ALL_PERMISSIONS)
