"""Many aggregates' events in one query, and the aggregates rebuilt from them.

The library's repository reads one aggregate per query: applying a batch of worker
reports, or cancelling many tasks in one group commit, would cost a round trip per task.
On SQLite and PostgreSQL this selects the events of many aggregates at once, in the table
the recorder writes, reading the recorder's table and connection attributes (eventsourcing
9.5.6, pinned in pyproject.toml); tests/integration/test_event_loading.py holds it to the
library's own ``select_events`` on both. Any other recorder (the in-memory one of
commands/memory.py) is read through its public ``select_events``, one aggregate at a
time: no round trips to save there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, Mapper, Recorder, StoredEvent

CHUNK = 1000  # ids per statement (SQLite allows 32,766 parameters; keep statements small)


def select_events_many(recorder: Recorder, ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
    """Every stored event of each of ``ids``, in version order; absent ids are left out."""
    found: dict[UUID, list[StoredEvent]] = {}
    pending = list(ids)
    for start in range(0, len(pending), CHUNK):
        for event in _select(recorder, pending[start : start + CHUNK]):
            found.setdefault(_uuid(event.originator_id), []).append(event)
    return found


def rebuild_many(recorder: Recorder, mapper: Mapper[Any], ids: Collection[UUID]) -> dict[UUID, Any]:
    """The aggregates among ``ids`` that have events, rebuilt from them.

    What the library's ``project_aggregate`` does, without its per-event ``isinstance``
    check against a runtime Protocol (see docs/benchmarks.md, "The write
    side's shortcuts, measured")."""
    to_domain_event = mapper.to_domain_event
    aggregates: dict[UUID, Any] = {}
    for aggregate_id, stored in select_events_many(recorder, ids).items():
        aggregate: Any = None
        for record in stored:
            event: Any = to_domain_event(record)
            aggregate = event.mutate(aggregate)
        if aggregate is not None:
            aggregates[aggregate_id] = aggregate
    return aggregates


def _select(recorder: Recorder, ids: list[UUID]) -> Iterator[StoredEvent]:
    datastore: Any = getattr(recorder, "datastore", None)
    table = getattr(recorder, "events_table_name", None)
    if datastore is None or table is None:
        if not isinstance(recorder, AggregateRecorder):
            raise TypeError(f"cannot batch-read events from {type(recorder).__name__}")
        for aggregate_id in ids:  # the public API: one aggregate at a time
            yield from recorder.select_events(aggregate_id)
        return
    if hasattr(datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(datastore.schema), Identifier(table))
        with datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, (ids,), prepare=True)
            rows = cursor.fetchall()
        for row in rows:
            yield StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
        return
    marks = ", ".join("?" for _ in ids)
    sql = (
        f"SELECT originator_id, originator_version, topic, state FROM {table} "
        f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version"
    )
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(sql, [i.hex for i in ids])
        rows = cursor.fetchall()
    for row in rows:
        yield StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"],
        )


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
