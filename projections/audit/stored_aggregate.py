"""One aggregate as ``taskexec verify`` reads it back from the store: its records, their
decoded states and events, what kind of aggregate it is, and its replay."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from commands.event_decoder import StoredRecord
from commands.public_events import aggregate_kind, topic_parts
from domain.apikey import ApiKey
from domain.definition_record import DefinitionRecord


@dataclass
class StoredAggregate:
    """One aggregate of a batch: its rows, decoded states and domain events."""

    originator_id: UUID
    records: list[StoredRecord]
    states: list[dict[str, Any] | None]
    events: list[Any]  # None where the state did not decode
    kind: str = "unknown"
    label: str = ""
    broken: bool = False  # a gap or undecodable event: replay cannot be trusted


def by_aggregate(records: Sequence[StoredRecord]) -> Iterable[list[StoredRecord]]:
    """``records`` (ordered by aggregate) cut into one list per aggregate."""
    group: list[StoredRecord] = []
    for record in records:
        if group and record.originator_id != group[0].originator_id:
            yield group
            group = []
        group.append(record)
    if group:
        yield group


def identify(aggregate: StoredAggregate) -> tuple[str, str]:
    """(kind, the id people know it by): a task id, a definition id, a key id."""
    event = next((e for e in aggregate.events if e is not None), None)
    if event is None:
        kind = topic_parts(aggregate.records[0].topic)[0]
        return kind, str(aggregate.originator_id)
    kind = aggregate_kind(event)
    first = aggregate.events[0]
    if isinstance(first, DefinitionRecord.Registered):
        return kind, first.definition_id
    if isinstance(first, ApiKey.Created):
        return kind, first.key_id
    return kind, str(aggregate.originator_id)


def replay(
    aggregate: StoredAggregate, position: int, p0: int, mark: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """The aggregate after its events up to ``position``, and ``mark`` of it as it stood
    at position ``p0`` (None if it did not exist then)."""
    state: Any = None
    at_p0: Any = None
    for record, event in zip(aggregate.records, aggregate.events, strict=True):
        if record.position > position:
            break
        state = event.mutate(state)
        if record.position <= p0:
            at_p0 = mark(state)
    return state, at_p0
