"""Unfinished tasks this process saved, kept in memory so that the next command or report
on them does not read their events back and rebuild them.

Without it, a task's events are read and replayed once per batch that touches it: a
submitted task is loaded again for its Started report and again for its Completed one.
Kept here after a successful save, a task is handed out as a copy (the callers mutate
what they get), so the kept state is always exactly what was committed.

A kept task may be stale: another process (or a save that bypassed the cache) recorded
events after it. That is safe because versions are dense: an event made from a stale
copy takes a version that is taken already, the store refuses the transaction
(IntegrityError), and the service then calls :meth:`TaskCache.refused` before trying
again on fresh state. That empties the cache and turns it off for ``pause`` seconds:
with several replicas writing the same tasks (their results consumers share the
reports), kept copies would be stale so often that most batches would be refused once;
one refusal a minute is what that costs instead. A save past the cache calls
:meth:`TaskCache.forget` for its tasks. Finished tasks are dropped (only a requeue, rare,
changes one again: it is read from the store then). When full, a new task is kept only
if the oldest one is older than ``max_age``: work is mostly taken in the order it was
submitted, so the oldest entries are the next to be used, and evicting them to make room
would miss on every task of a long backlog.

Switched off (``enabled=False``, from ``TASKEXEC_FAST_TASK_CACHE``) it keeps nothing:
every command loads its tasks from the event store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from uuid import UUID

from domain.task import Task

CAPACITY = 4096
MAX_AGE_S = 60.0
PAUSE_S = 60.0  # off for this long after a refused save


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
        pause: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._capacity = capacity
        self._max_age = max_age
        self._pause = pause
        self._off_until = float("-inf")
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
        if not self.enabled:
            return found
        with self._lock:
            if self._clock() < self._off_until:
                return found
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
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            if now < self._off_until:
                return
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
        """A save of ``ids`` went past the cache: they are no longer what is kept."""
        with self._lock:
            for task_id in ids:
                self._tasks.pop(task_id, None)

    def refused(self) -> None:
        """The store refused a save (a kept task may have been stale: another writer is
        about): forget everything and keep nothing for ``pause`` seconds."""
        with self._lock:
            self._tasks.clear()
            self._off_until = self._clock() + self._pause

    def _evict_one(self, now: float) -> bool:
        oldest = next(iter(self._tasks), None)
        if oldest is None or now - self._tasks[oldest][0] < self._max_age:
            return False
        del self._tasks[oldest]
        return True
