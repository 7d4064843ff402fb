"""The task families, counted from the events the projection applies.

The projection runner applies every event once, in order, on the one replica whose
projection writes (api/bootstrap.py puts this tap first among its projections), so each
submission, attempt and end is counted once across replicas: the others count nothing
(Prometheus sums the replicas). A batch's observations are staged in ``apply`` and
counted in ``remember``, once the batch is committed: a batch that rolls back and is
applied again is not counted twice.

Events name only their task; the definition, the submission time and the running
attempt's start are kept here for unfinished tasks (the newest ``KEEP`` of them) and
read from the read model, as it was before the batch, for the others (one query per
batch that meets any).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.error_types import TIMEOUT
from domain.task import Task
from projections import task_sql
from projections.db import Cursor
from projections.task_rows import ATTEMPTS, COLUMNS, CREATED, START, STATUS, Row, uuid_text
from projections.tasks import FINISHED, TaskProjection

log = logging.getLogger(__name__)

KEEP = 50_000  # unfinished tasks remembered (about 10 MB)
_DEFINITION = COLUMNS.index("definition_id")


class Sink(Protocol):
    """Where the counts go (api/metrics/families.py, ServeMetrics)."""

    def submitted(self, definition: str, count: int) -> None: ...
    def finished(self, definition: str, status: str, count: int) -> None: ...
    def attempts(self, definition: str, outcome: str, count: int) -> None: ...
    def ran(self, definition: str, seconds: float) -> None: ...
    def waited(self, definition: str, seconds: float) -> None: ...


@dataclass(slots=True)  # one object a task, not two: less for the collector to scan
class _Task:
    definition: str
    created: datetime | None
    started: bool  # an attempt has started (the queue wait is measured once)
    running_since: datetime | None  # the running attempt's start
    done: bool = False  # in a final status (forgotten, unless an operator's retry follows)


@dataclass
class _Staged:
    """One batch's observations, counted once it is committed."""

    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    runs: list[tuple[str, float]] = field(default_factory=list)
    waits: list[tuple[str, float]] = field(default_factory=list)
    # By the task id's integer (UUID's own hash is Python code: 15 of them a task).
    tasks: dict[int, _Task | None] = field(default_factory=dict)  # None: not in the model


class MetricsTap:
    """A projection without tables (the runner's Projection protocol)."""

    name = "metrics"

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._known: OrderedDict[int, _Task] = OrderedDict()  # oldest first, by id's int
        self._staged: _Staged | None = None
        self._views = TaskProjection()
        self._failed = False

    def ddl(self, generation: int) -> list[str]:
        return []

    def tables(self, generation: int) -> list[str]:
        return []

    def upgrade(self, cur: Cursor, generation: int) -> None:
        """No tables: nothing to bring up to date."""

    def apply(self, cur: Cursor, events: list[tuple[int, Any]], generation: int) -> None:
        self._staged = None
        tasks = [event for _, event in events if isinstance(event, Task.Event)]
        if not tasks:
            return
        new = {event.originator_id.int for event in tasks if isinstance(event, Task.Submitted)}
        known = self._known
        unknown = {
            uuid_text(task_id)
            for event in tasks
            if (task_id := event.originator_id.int) not in new and task_id not in known
        }
        # Before the task projection's own changes (this tap comes first); an error of
        # the database here is the batch's, and the runner retries it.
        rows = task_sql.load(cur, self._views.tables(generation)[0], unknown) if unknown else {}
        try:
            self._staged = self._observe(tasks, rows)
        except Exception:  # never a reason to stop the projection
            if not self._failed:
                log.exception("metrics: a batch's task events could not be counted")
            self._failed = True

    def remember(self) -> None:
        staged, self._staged = self._staged, None
        if staged is None:
            return
        sink = self._sink
        for key, count in staged.counts.items():
            kind, definition, *label = key
            if kind == "submitted":
                sink.submitted(definition, count)
            elif kind == "finished":
                sink.finished(definition, label[0], count)
            else:
                sink.attempts(definition, label[0], count)
        for definition, seconds in staged.runs:
            sink.ran(definition, seconds)
        for definition, seconds in staged.waits:
            sink.waited(definition, seconds)
        known = self._known
        for task_id, task in staged.tasks.items():
            known.pop(task_id, None)  # re-added last: the most recent
            if task is not None and not task.done:
                known[task_id] = task
        while len(known) > KEEP:
            known.popitem(last=False)

    def forget(self) -> None:
        self._staged = None  # rolled back: applied again later

    def _observe(self, events: list[Any], rows: dict[str, Row]) -> _Staged:
        staged = _Staged()
        local = staged.tasks
        for event in events:
            task_id: int = event.originator_id.int
            if isinstance(event, Task.Submitted):
                local[task_id] = _Task(event.definition_id, event.timestamp, False, None)
                staged.counts["submitted", event.definition_id] += 1
                continue
            if task_id in local:
                task = local[task_id]
            else:
                task = local[task_id] = self._recalled(task_id, rows)
            if task is None:
                continue
            if isinstance(event, Task.Started):
                if not task.started and task.created is not None:
                    staged.waits.append((task.definition, _seconds(task.created, event)))
                task.started, task.done = True, False
                task.running_since = event.timestamp
                continue
            outcome, status = _ENDS.get(type(event), (None, None))
            if outcome is None:
                continue  # an event this tap does not count
            if outcome == "failed" and getattr(event, "error_type", "") == TIMEOUT:
                outcome = "timed_out"
            if task.running_since is not None:
                staged.counts["attempts", task.definition, outcome] += 1
                staged.runs.append((task.definition, _seconds(task.running_since, event)))
                task.running_since = None
            if status is not None:
                staged.counts["finished", task.definition, status] += 1
                task.done = True
        return staged

    def _recalled(self, task_id: int, rows: dict[str, Row]) -> _Task | None:
        """A copy of what is known of the task (this batch may roll back)."""
        known = self._known.get(task_id)
        if known is not None:  # a copy: this batch may roll back
            return _Task(
                known.definition, known.created, known.started, known.running_since, known.done
            )
        row = rows.get(uuid_text(task_id))
        if row is None:
            return None
        running = row[STATUS] == "RUNNING" and row[START] is not None
        return _Task(
            definition=row[_DEFINITION],
            created=_time(row[CREATED]),
            started=int(row[ATTEMPTS] or 0) > 0,
            running_since=_time(row[START]) if running else None,
            done=row[STATUS] in FINISHED,
        )


# An event that ends an attempt (if one runs): its outcome, and the final status if the
# task ends with it (a scheduled retry does not).
_ENDS: dict[type[Any], tuple[str, str | None]] = {
    Task.Completed: ("completed", "COMPLETED"),
    Task.Failed: ("failed", "FAILED"),
    Task.TimedOut: ("timed_out", "TIMED_OUT"),
    Task.RetryScheduled: ("failed", None),
    Task.Cancelled: ("cancelled", "CANCELLED"),
}


def _seconds(since: datetime, event: Any) -> float:
    return max(0.0, float((event.timestamp - since).total_seconds()))


def _time(value: Any) -> datetime | None:
    """A read-model time (fixed-width UTC text) as a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
