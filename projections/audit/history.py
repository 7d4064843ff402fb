"""A task's history and the export of every event, in the public vocabulary
(commands/public_events.py) that the NATS events share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from uuid import UUID

import msgspec

from commands.event_decoder import StoredRecord
from commands.public_events import (
    aggregate_kind,
    event_id,
    public_data,
    public_type,
    rfc3339,
    status_after,
)
from commands.service import TaskService
from domain.chain import canonical_time, event_fields
from domain.task import Task
from domain.tenancy import visible

_json = msgspec.json.Encoder()
Progress = Callable[[int, int], None]  # (done, total)


def history_entry(event: Any, position: int) -> dict[str, Any]:
    """One event as the history endpoint and command show it (camelCase)."""
    return {
        "id": event_id(event.originator_id, event.originator_version),
        "type": public_type(event),
        "version": event.originator_version,
        "position": position,
        "time": rfc3339(event.timestamp),
        "actor": dict(getattr(event, "actor", {}) or {}),
        "status": status_after(event),
        "data": public_data(event),
        "prevHash": getattr(event, "prev_hash", None),
        "hash": getattr(event, "hash", None),
    }


def task_history(
    service: TaskService, task_id: UUID, tenant: str | None = None
) -> list[dict[str, Any]] | None:
    """The task's events in order, or None if no task has this id (or the task is not
    visible to a principal of ``tenant``: None, every task is).

    Only a task's events are shown: the id of an API key or a definition record is
    "not found" here, not a way to read other aggregates.
    """
    reader, decoder = service.event_reader, service.event_decoder
    records = reader.aggregate(task_id)
    events = [(r.position, decoder.decode(r)[1]) for r in records]
    if not events or not isinstance(events[0][1], Task.Event):
        return None
    if not visible(getattr(events[0][1], "tenant", None), tenant):  # set by Submitted
        return None
    return [history_entry(event, position) for position, event in events]


def export_line(record: StoredRecord, state: dict[str, Any], event: Any) -> dict[str, Any]:
    """One event of the export: the public view and the exact hashed material."""
    return {
        "position": record.position,
        "id": event_id(record.originator_id, record.version),
        "aggregateType": aggregate_kind(event),
        "aggregateId": str(record.originator_id),
        "type": public_type(event),
        "version": record.version,
        "time": rfc3339(event.timestamp),
        "actor": state.get("actor"),
        "data": public_data(event),
        "prevHash": state.get("prev_hash"),
        "hash": state.get("hash"),
        # What the hash covers, exactly as stored (see docs/events.md, "Tamper evidence"):
        "topic": record.topic,
        "timestamp": canonical_time(state["timestamp"]),
        "fields": event_fields(state),
    }


@dataclass(frozen=True)
class ExportResult:
    events: int
    last_position: int


def export(
    service: TaskService,
    out: IO[bytes],
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress = lambda done, total: None,
    batch: int = 5000,
) -> ExportResult:
    """Write every event with ``since <= time < until`` as JSON lines, in global order.

    Reads and writes batch by batch: memory stays flat whatever the store's size. The
    head is fixed at the start, so the export is a consistent prefix of the log.
    """
    reader, decoder = service.event_reader, service.event_decoder
    head = reader.head()
    written, position = 0, 0
    for records in reader.by_position(0, until=head, batch=batch):
        lines: list[bytes] = []
        for record in records:
            state, event = decoder.decode(record)
            moment: datetime = state["timestamp"]
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            if (since is not None and moment < since) or (until is not None and moment >= until):
                continue
            lines.append(_json.encode(export_line(record, state, event)))
        if lines:
            out.write(b"\n".join(lines) + b"\n")
            written += len(lines)
        position = records[-1].position
        progress(position, head)
    progress(head, head)
    return ExportResult(events=written, last_position=position)
