"""Unfinished tasks this process saved, kept in memory so that the next command or report
on them does not read their events back and rebuild them.

Each task's events are read and replayed once per batch that touches it: a submitted
task is loaded again for its Started report and again for its Completed one. Kept here
after a successful save, a task is handed out as a copy (the callers mutate what they
get), so the kept state is always exactly what was committed.

A kept task may be stale: another process (or a save that bypassed the cache) recorded
events after it. That is safe because versions are dense: an event made from a stale
copy takes a version that is taken already, the store refuses the transaction
(IntegrityError), and whoever saves then calls :meth:`TaskCache.forget` before trying
again on fresh state. Finished tasks are dropped (nothing more happens to them). When
full, a new task is kept only if the oldest one is older than ``max_age``: work is
mostly taken in the order it was submitted, so the oldest entries are the next to be
used, and evicting them to make room would miss on every task of a long backlog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from uuid import UUID

from domain.task import Task

CAPACITY = 4096
MAX_AGE_S = 60.0


def _copy(task: Task) -> Task:
    clone: Task = object.__new__(type(task))
    clone.__dict__.update(task.__dict__)
    clone.__dict__["_pending_events"] = []
    return clone


class TaskCache:
    """A bounded, thread-safe map of task id -> the task as last committed here."""

    def __init__(
        self,
        capacity: int = CAPACITY,
        max_age: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[UUID, tuple[float, Task]] = {}  # oldest first
        self.hits = 0  # for tests and stats
        self.misses = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def take(self, ids: Iterable[UUID]) -> dict[UUID, Task]:
        """Copies of the kept tasks among ``ids`` (the others must be loaded)."""
        found: dict[UUID, Task] = {}
        with self._lock:
            tasks = self._tasks
            for task_id in ids:
                kept = tasks.get(task_id)
                if kept is None:
                    self.misses += 1
                else:
                    found[task_id] = _copy(kept[1])
                    self.hits += 1
        return found

    def remember(self, tasks: Iterable[Task]) -> None:
        """``tasks`` were committed just now, with no pending events: keep the unfinished
        ones (unless a newer version is kept already), drop the finished ones."""
        now = self._clock()
        with self._lock:
            kept = self._tasks
            for task in tasks:
                task_id = task.id
                if task.status.is_terminal:
                    kept.pop(task_id, None)
                    continue
                current = kept.get(task_id)
                if current is not None:
                    if current[1].version > task.version:
                        continue
                    del kept[task_id]  # re-added below: its age starts again
                elif len(kept) >= self._capacity and not self._evict_one(now):
                    continue
                kept[task_id] = (now, task)

    def forget(self, ids: Iterable[UUID]) -> None:
        """The store refused a save touching ``ids`` (or it went past the cache)."""
        with self._lock:
            for task_id in ids:
                self._tasks.pop(task_id, None)

    def _evict_one(self, now: float) -> bool:
        oldest = next(iter(self._tasks), None)
        if oldest is None or now - self._tasks[oldest][0] < self._max_age:
            return False
        del self._tasks[oldest]
        return True
