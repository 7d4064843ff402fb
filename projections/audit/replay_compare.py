"""Replayed tasks and definitions compared with their read-model rows.

Each aggregate is replayed from its events up to the read model's position ``P`` (events
after ``P`` are not in the read model yet, so a live service never shows a false
difference). A difference is read again (row first, then events) before it is reported,
in case the service wrote in between.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

from commands.event_decoder import EventDecoder
from commands.event_reader import EventReader
from domain.definition_record import DefinitionRecord
from domain.task import Task
from projections.audit.findings import Problem, VerifyReport
from projections.audit.read_model_sql import definition_rows, task_rows
from projections.audit.stored_aggregate import StoredAggregate, replay
from projections.db import Cursor
from projections.queries import Generation
from projections.task_rows import free_text
from projections.tasks import json_text, timestamp_text

# Read-model column -> the Task attribute it must equal (enums by value, datetimes as
# read-model text); a column or attribute that one side lacks is not compared.
TASK_COLUMNS: dict[str, str] = {
    "definition_id": "definition_id",
    "definition_version": "definition_version",
    "definition_revision": "definition_revision",
    "workflow_instance_id": "workflow_instance_id",
    "timeout_ms": "timeout_ms",
    "status": "status",
    "type": "task_type",
    "priority": "priority",
    "input": "input",
    "output": "output",
    "error": "error",
    "attempts": "attempt",
    "start_time": "started_at",
    "end_time": "ended_at",
    "execution_environment": "worker",
    "cancel_reason": "cancel_reason",
    "next_attempt_at": "next_attempt_at",
    "scheduled_at": "scheduled_at",
    "tenant": "tenant",
    "created_at": "created_on",
    "updated_at": "modified_on",
    "version": "version",
}
_ABSENT = object()
JSON_COLUMNS = frozenset({"input", "output", "error"})
DEFINITION_COLUMNS = (
    "name",
    "description",
    "type",
    "version",
    "revision",
    "document",
    "created_at",
    "updated_at",
)


class ReplayComparer:
    """Compares batches of aggregates with their rows; keeps, as it goes, how many tasks
    (by status and type) and definitions existed at the baseline position ``p0``."""

    def __init__(
        self,
        reader: EventReader,
        decoder: EventDecoder,
        generation: Generation,
        report: VerifyReport,
        add: Callable[[Problem], None],
    ) -> None:
        self._reader = reader
        self._decoder = decoder
        self._generation = generation
        self._report = report
        self._add = add
        self.p0 = 0
        self.counts_at_p0: Counter[tuple[str, str]] = Counter()
        self.definitions_at_p0 = 0

    def tasks(self, aggregates: list[StoredAggregate]) -> None:
        ids = [str(a.originator_id) for a in aggregates]
        position, rows = self._generation.query(lambda cur, g: task_rows(cur, g, ids))
        for aggregate in aggregates:
            self._task(aggregate, position, rows.get(str(aggregate.originator_id)))

    def definitions(self, aggregates: list[StoredAggregate]) -> None:
        ids = [a.label for a in aggregates]
        position, rows = self._generation.query(lambda cur, g: definition_rows(cur, g, ids))
        for aggregate in aggregates:
            self._definition(aggregate, position, rows.get(aggregate.label))

    def _task(self, aggregate: StoredAggregate, position: int, row: dict[str, Any] | None) -> None:
        task_id = str(aggregate.originator_id)
        seen = self._check(
            "task", aggregate, position, row, _status_and_type, task_rows, task_id, task_differences
        )
        if seen is not None:
            self.counts_at_p0[seen] += 1

    def _definition(
        self, aggregate: StoredAggregate, position: int, row: dict[str, Any] | None
    ) -> None:
        seen = self._check(
            "definition",
            aggregate,
            position,
            row,
            _exists,
            definition_rows,
            aggregate.label,
            definition_differences,
        )
        if seen is not None:
            self.definitions_at_p0 += 1

    def _check(
        self,
        kind: str,
        aggregate: StoredAggregate,
        position: int,
        row: dict[str, Any] | None,
        at_p0: Callable[[Any], Any],
        read_rows: Callable[[Cursor, int, list[str]], tuple[int, dict[str, dict[str, Any]]]],
        key: str,
        differences: Callable[[Any, dict[str, Any] | None], list[str]],
    ) -> Any:
        """Replay ``aggregate`` up to ``position`` and compare it with its ``row``; a
        difference is confirmed on a second read (row first, then the events: the service
        may have written meanwhile). Returns what ``at_p0`` said of it at P0 (None: not
        there yet, or the replay failed)."""
        try:
            state, seen = replay(aggregate, position, self.p0, at_p0)
        except Exception as exc:
            self._problem(aggregate, None, f"replay failed: {exc!r}")
            return None
        found = differences(state, row)
        if found:
            position, rows = self._generation.query(lambda cur, g: read_rows(cur, g, [key]))
            fresh = self._fresh(aggregate)
            if fresh is not None:
                state, _ = replay(fresh, position, self.p0, at_p0)
                found = differences(state, rows.get(key))
        if found:
            version = state.version if state is not None else None
            self._problem(
                aggregate, version, "read model differs from the replay: " + "; ".join(found)
            )
        self._report.compared[kind] += 1
        return seen

    def _fresh(self, aggregate: StoredAggregate) -> StoredAggregate | None:
        """The aggregate's events read again (None if one does not decode)."""
        records = self._reader.aggregate(aggregate.originator_id)
        try:
            states = [self._decoder.state(r) for r in records]
            events = [self._decoder.event(r, s) for r, s in zip(records, states, strict=True)]
        except Exception:
            return None
        return StoredAggregate(
            aggregate.originator_id, records, list(states), events, aggregate.kind, aggregate.label
        )

    def _problem(self, aggregate: StoredAggregate, version: int | None, message: str) -> None:
        self._add(Problem(aggregate.kind, aggregate.label, version, message))


def _status_and_type(task: Task) -> tuple[str, str]:
    return task.status.value, task.task_type.value


def _exists(_: Any) -> bool:
    return True


def _plain(value: Any) -> Any:
    """A Task attribute as the read model holds it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, str):
        return free_text(value)
    return value


def _time_text(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is not None and not offset:  # UTC: the projection's text, much faster
        return value.isoformat(timespec="microseconds")[:26] + "Z"
    return timestamp_text(value)


def _same_json(stored: str | None, value: Any) -> bool:
    """The projection writes the event's JSON as text: equal text is equal JSON; else
    compare the values (key order or number spelling may differ)."""
    if stored is None or value is None:
        return stored is None and value is None
    return stored == json_text(value) or json.loads(stored) == value


def task_differences(task: Task | None, row: dict[str, Any] | None) -> list[str]:
    if task is None and row is None:
        return []
    if task is None:
        assert row is not None
        return [
            f"the read model has the task at version {row['version']}, "
            "the store has no event of it up to the read model's position"
        ]
    if row is None:
        return ["the task is missing from the read model"]
    differences = []
    for column, attribute in TASK_COLUMNS.items():
        stored = row.get(column, _ABSENT)
        value = getattr(task, attribute, _ABSENT)
        if stored is _ABSENT or value is _ABSENT:
            continue  # one side does not have it: not compared
        if column in JSON_COLUMNS:
            if not _same_json(stored, value):
                differences.append(f"{column}: read model {stored}, replay {json_text(value)}")
            continue
        expected = _plain(value)
        if stored == expected:
            continue
        if column == "version" and isinstance(stored, int) and stored > expected:
            differences.append(
                f"the read model is at version {stored}, the store has only {expected} "
                "event(s) (events deleted?)"
            )
        else:
            differences.append(f"{column}: read model {stored!r}, replay {expected!r}")
    stored_type = row.get("error_type", _ABSENT)  # the type of ``error``, kept apart
    expected_type = free_text(task.error["type"]) if task.error else None
    if stored_type is not _ABSENT and stored_type != expected_type:
        differences.append(f"error_type: read model {stored_type!r}, replay {expected_type!r}")
    return differences


def definition_differences(
    record: DefinitionRecord | None, row: dict[str, Any] | None
) -> list[str]:
    if record is None and row is None:
        return []
    if record is None:
        return ["in the read model but no event up to the read model's position"]
    if row is None:
        return ["the definition is missing from the read model"]
    document = record.document
    expected = {
        "name": str(document.get("name")),
        "description": str(document.get("description", "")),
        "type": str(document.get("type")),
        "version": str(document.get("version")),
        "revision": record.version,
        "document": document,
        "created_at": timestamp_text(record.created_on),
        "updated_at": timestamp_text(record.modified_on),
    }
    return [
        f"{column}: read model {row.get(column)!r}, replay {expected[column]!r}"
        for column in DEFINITION_COLUMNS
        if row.get(column) != expected[column]
    ]
