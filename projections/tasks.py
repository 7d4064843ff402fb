"""The task read model: one denormalised row per task, plus exact counts per status and type
(and per tenant, status and type for the tasks with a tenant).

A batch of events is applied in memory first (one SELECT for the rows of tasks submitted
in earlier batches; each task's events collapse into its final row, see
projections/task_rows.py), then written with one INSERT (COPY) for the new tasks, one
UPDATE for the others and one counter upsert (projections/task_sql.py): the cost per
batch, not per event, is what bounds catch-up and rebuild speed.

The rows a live batch changes were mostly written by the batch before (a task's
Submitted, then its Started and Completed a few milliseconds later), so the projection
keeps the rows of unfinished tasks it wrote, as committed (``remember``), and reads only
the others. The runner says when those may be stale (``forget``): a row is kept only
while every change to the table since was this runner's own.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any
from uuid import UUID

from domain.task import Task
from domain.values import TaskStatus
from projections import task_sql, task_upgrade
from projections.db import Cursor
from projections.schema import ApplyError
from projections.sql import statement
from projections.task_rows import (
    CHANGES,
    COLUMNS,
    ID,
    STATUS,
    TENANT,
    TYPE,
    Handler,
    Row,
    Rows,
    finish,
    json_text,
    submitted,
    timestamp_text,
    uuid_text,
)

__all__ = ["COLUMNS", "TaskProjection", "json_text", "timestamp_text"]

KEPT_ROWS = 5_000  # unfinished tasks' rows: a few seconds of full load
# A finished task never changes again: its row is not kept.
FINISHED = frozenset(status.value for status in TaskStatus if status.is_terminal)


_DDL = (  # in projections/sql/task_view.sql
    "create_task_view",
    "create_task_created_index",
    "create_task_status_index",
    "create_task_type_index",
    "create_task_workflow_index",
    "create_task_error_type_index",
    "create_task_tenant_created_index",
    "create_task_tenant_status_index",
    "create_task_tenant_type_index",
    "create_task_tenant_workflow_index",
    "create_task_tenant_error_type_index",
    "create_task_lease_index",
    "create_task_counts",
    "create_task_tenant_counts",
)


def _SUBMITTED(row: Row, event: Any) -> None:
    """A marker, never called: a Submitted makes its row (``submitted``)."""


class TaskProjection:
    """``task_view_g<N>``, ``task_counts_g<N>`` and ``task_tenant_counts_g<N>``."""

    name = "tasks"

    def __init__(self) -> None:
        self._kept: Rows = {}  # id -> row as committed, oldest first
        self._kept_generation = 0
        self._written: tuple[int, list[Row]] = (0, [])  # the last batch's rows

    def remember(self) -> None:
        generation, rows = self._written
        self._written = (0, [])
        kept = self._kept
        if generation != self._kept_generation:
            kept.clear()
            self._kept_generation = generation
        for row in rows:
            task_id = row[ID]
            kept.pop(task_id, None)  # re-added last: the most recent
            if row[STATUS] not in FINISHED:
                kept[task_id] = row
        for task_id in list(itertools.islice(kept, max(0, len(kept) - KEPT_ROWS))):
            del kept[task_id]

    def forget(self) -> None:
        self._kept.clear()
        self._written = (0, [])

    def _recall(self, generation: int, ids: set[str]) -> Rows:
        """Copies of the kept rows among ``ids`` (a batch changes its rows in place, and
        may roll back)."""
        kept = self._kept
        if generation != self._kept_generation or not kept:
            return {}
        return {task_id: list(kept[task_id]) for task_id in ids if task_id in kept}

    def tables(self, generation: int) -> list[str]:
        g = generation
        return [f"task_view_g{g}", f"task_counts_g{g}", f"task_tenant_counts_g{g}"]

    def ddl(self, generation: int) -> list[str]:
        view, counts, tenants = self.tables(generation)
        fields = {"view": view, "counts": counts, "tenant_counts": tenants, "g": generation}
        return [statement(name).format(**fields) for name in _DDL]

    def upgrade(self, cur: Cursor, generation: int) -> None:
        """Columns added since an existing generation's table was made, filled in."""
        task_upgrade.add_missing_columns(cur, self.tables(generation)[0])

    def apply(self, cur: Cursor, events: list[tuple[int, Any]], generation: int) -> None:
        view, counts, tenant_counts = self.tables(generation)
        self._written = (generation, [])
        relevant: list[tuple[int, Any]] = []
        handlers: list[Handler] = []
        task_ids: list[str] = []
        names: dict[int, str] = {}  # a task's id as text, made once per batch
        new: set[str] = set()  # tasks submitted in this very batch
        for item in events:
            event = item[1]
            handler = _handler(type(event))
            if handler is None:
                continue
            originator_id = event.originator_id
            if type(originator_id) is UUID:
                task_id = names.get(originator_id.int)
                if task_id is None:
                    task_id = names[originator_id.int] = uuid_text(originator_id.int)
            else:
                task_id = str(originator_id)
            if handler is _SUBMITTED:
                new.add(task_id)
            relevant.append(item)
            handlers.append(handler)
            task_ids.append(task_id)
        if not relevant:
            return
        touched = set(task_ids)
        # Only the tasks submitted before this batch need reading, and only those not
        # kept. (A duplicate Submitted still fails: at the event when its row was read
        # or made here, else at the INSERT.)
        earlier = touched - new
        rows = self._recall(generation, earlier)
        rows.update(task_sql.load(cur, view, earlier - rows.keys()))
        before = {task_id: (row[STATUS], row[TYPE], row[TENANT]) for task_id, row in rows.items()}
        created: list[Row] = []
        for (position, event), handler, task_id in zip(relevant, handlers, task_ids, strict=True):
            try:
                row = rows.get(task_id)
                if handler is _SUBMITTED:
                    if row is not None:
                        raise ValueError(f"task {task_id} is already in the read model")
                    rows[task_id] = row = submitted(task_id, event)
                    created.append(row)
                elif row is None:
                    raise LookupError(f"task {task_id} is missing from the read model")
                else:
                    handler(row, event)
            except Exception as exc:
                raise ApplyError(position, exc) from exc
        changed = [finish(rows[task_id]) for task_id in before]  # the rows read above
        created = [finish(row) for row in created]
        try:
            task_sql.insert(cur, view, created)
            task_sql.update(cur, view, changed)
        except Exception as exc:  # e.g. a task submitted twice: name where the batch began
            raise ApplyError(relevant[0][0], exc) from exc
        self._written = (generation, changed + created)
        delta: Counter[tuple[str, str, str | None]] = Counter()
        for key in before.values():
            delta[key] -= 1
        for row in rows.values():
            delta[(row[STATUS], row[TYPE], row[TENANT])] += 1
        task_sql.add_counts(cur, counts, _totals(delta))
        changes = [(t, status, type_, n) for (status, type_, t), n in delta.items() if n and t]
        task_sql.add_tenant_counts(cur, tenant_counts, changes)


def _totals(delta: Counter[tuple[str, str, str | None]]) -> list[tuple[str, str, int]]:
    """The changes per (status, type), whatever the tenant."""
    totals: Counter[tuple[str, str]] = Counter()
    for (status, type_, _), n in delta.items():
        totals[(status, type_)] += n
    return [(status, type_, n) for (status, type_), n in totals.items() if n]


_HANDLERS: dict[type[Any], Handler | None] = {Task.Submitted: _SUBMITTED, **CHANGES}


def _handler(event_type: type[Any]) -> Handler | None:
    """The handler of an event class (None: not a task event this projection keeps);
    found by class once, then by a dictionary look-up."""
    try:
        return _HANDLERS[event_type]
    except KeyError:
        found = next((h for c, h in _HANDLERS.items() if h and issubclass(event_type, c)), None)
        _HANDLERS[event_type] = found
        return found
