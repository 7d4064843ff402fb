"""Tasks read back from the event store, for a command to act on.

One task: the library's repository (its events, replayed). Many at once (a group commit's
cancels and keyed submits, a batch of reports): the copies this process kept
(commands/task_cache.py), and the rest in one query (commands/event_loading.py), not one
query per task.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import Mapper, Recorder

from commands.errors import NotFound
from commands.event_loading import rebuild_many
from commands.task_cache import TaskCache
from domain.task import Task


def load_task(repository: Repository[UUID], task_id: UUID) -> Task:
    """The task ``task_id``; NotFound if there is none."""
    try:
        task: Any = repository.get(task_id)
    except AggregateNotFoundError:
        raise NotFound(f"task {task_id} not found", {"field": "taskId"}) from None
    assert isinstance(task, Task)
    return task


def load_tasks(
    cache: TaskCache, recorder: Recorder, mapper: Mapper[Any], ids: Collection[UUID]
) -> dict[UUID, Task]:
    """The tasks among ``ids`` that exist: kept ones from ``cache`` (copies), the others
    read with one query."""
    if not ids:
        return {}
    tasks = cache.take(ids)
    missing = [task_id for task_id in ids if task_id not in tasks]
    if missing:
        found = rebuild_many(recorder, mapper, missing)
        tasks.update((i, task) for i, task in found.items() if isinstance(task, Task))
    return tasks
