"""The trace context of each task, for the relay: every CloudEvent of a task carries it.

Only a task's Submitted event holds its context (domain/task.py); the relay meets the
task's later events without it. It keeps the contexts of the tasks in flight, learnt
from their Submitted events as they pass and dropped when a task ends; a task it has not
met (submitted before this relay began, or requeued after it ended) is looked up once.
Used only with tracing on (workers/tracing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from domain.task import Task

Carrier = dict[str, str]
ENDED = (Task.Completed, Task.Failed, Task.TimedOut, Task.Cancelled)
KEPT_AT_MOST = 20_000  # tasks in flight remembered; the oldest are forgotten first


class TraceContexts:
    """Task id → its trace context (None: it has none), for events in log order."""

    def __init__(self, lookup: Callable[[UUID], Carrier | None]) -> None:
        self._lookup = lookup
        self._known: dict[UUID, Carrier | None] = {}
        self.lookups = 0  # tasks looked up (not met as they were submitted): for tests

    def of(self, event: Any) -> Carrier | None:
        task_id = event.originator_id
        if isinstance(event, Task.Submitted):
            trace = event.trace
            self._keep(task_id, trace)
        elif task_id in self._known:
            trace = self._known[task_id]
        else:
            self.lookups += 1
            trace = self._lookup(task_id)
            self._keep(task_id, trace)
        if isinstance(event, ENDED):
            self._known.pop(task_id, None)
        return trace

    def _keep(self, task_id: UUID, trace: Carrier | None) -> None:
        self._known[task_id] = trace
        if len(self._known) > KEPT_AT_MOST:
            del self._known[next(iter(self._known))]


def tracing_extension(trace: Carrier | None) -> dict[str, Any]:
    """The CloudEvents distributed-tracing attributes of ``trace`` (none without one)."""
    if not trace or "traceparent" not in trace:
        return {}
    return {
        "traceparent": trace["traceparent"],
        "tracestate": trace.get("tracestate", msgspec.UNSET),
    }
