"""Tasks read back from the event store, for a command to act on.

One task: the library's repository (its events, replayed). Many at once (a group commit's
cancels and keyed submits, a batch of reports): the copies this process kept
(commands/task_cache.py), and the rest in one query (``EventReader.many``), not one query
per task.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository

from commands.errors import NotFound
from commands.event_decoder import EventDecoder
from commands.event_reader import EventReader
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
    cache: TaskCache, reader: EventReader, decoder: EventDecoder, ids: Collection[UUID]
) -> dict[UUID, Task]:
    """The tasks among ``ids`` that exist: kept ones from ``cache`` (copies), the others
    read with one query."""
    if not ids:
        return {}
    tasks = cache.take(ids)
    missing = [task_id for task_id in ids if task_id not in tasks]
    if missing:
        found = rebuild_many(reader, decoder, missing)
        tasks.update((i, task) for i, task in found.items() if isinstance(task, Task))
    return tasks


def rebuild_many(
    reader: EventReader, decoder: EventDecoder, ids: Collection[UUID]
) -> dict[UUID, Any]:
    """The aggregates among ``ids`` that have events, rebuilt from them.

    What the library's ``project_aggregate`` does, without its per-event ``isinstance``
    check against a runtime Protocol (see docs/benchmarks.md, "The write side's
    shortcuts, measured")."""
    domain_event = decoder.domain_event
    aggregates: dict[UUID, Any] = {}
    for aggregate_id, stored in reader.many(ids).items():
        aggregate: Any = None
        for record in stored:
            event: Any = domain_event(record)
            aggregate = event.mutate(aggregate)
        if aggregate is not None:
            aggregates[aggregate_id] = aggregate
    return aggregates
