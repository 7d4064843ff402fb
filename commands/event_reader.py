"""Every read of the event tables, on SQLite, PostgreSQL and the in-memory store.

The library reads one aggregate, or the log row by row; the service also needs pages of
the log as plain tuples (the relay's and the projections' hot path), many aggregates in
one query (a group commit, a batch of reports) and scans of the whole store in global or
aggregate order (history, export, verify). On SQLite and PostgreSQL each read is one
statement of commands/event_store_sql.py on the recorder's table and connection
(eventsourcing 9.5.6, pinned); any other recorder (the in-memory one of
commands/memory.py) is read through the library's public recorder API. Synchronous:
call it from threads. Decoding: commands/event_decoder.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID, SafeUUID

from eventsourcing.persistence import AggregateRecorder, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row

from commands import event_store_sql as sql
from commands.event_decoder import IdConvertor, StoredRecord

CHUNK = 1000  # ids per statement (SQLite allows 32,766 parameters; keep statements small)
Rows = tuple[Iterable[tuple[Any, ...]], IdConvertor | None]


class EventReader:
    """Reads ``recorder``'s events (read-only)."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.tables: sql.EventTables | None = None  # None: no SQL, the public API
        self._uuid: IdConvertor = _as_uuid  # stored id -> UUID
        self._log_ids: IdConvertor | None = None  # what log_rows' ids need first
        if isinstance(recorder, PostgresApplicationRecorder):
            schema = recorder.datastore.schema
            self.tables = sql.EventTables.postgresql(schema, recorder.events_table_name)
        elif isinstance(recorder, SQLiteApplicationRecorder):
            self.tables = sql.EventTables.sqlite(recorder.events_table_name)
            if recorder.datastore.originator_id_type == "uuid":
                self._uuid = self._log_ids = uuid_of_hex
        self.postgres = self.tables is not None and self.tables.postgres

    @contextmanager
    def log_rows(self, after: int, limit: int) -> Iterator[Rows]:
        """The log after ``after`` (up to ``limit`` rows) as plain tuples (position, id,
        version, topic, state), streamed, and how to convert their ids (None: as they
        come). SQL only: the rows ``select_notifications`` selects."""
        tables = self.tables
        assert tables is not None, "log_rows reads SQL stores only"
        statement = tables.sql(sql.LOG_PAGE)
        if tables.postgres:
            with self.recorder.datastore.get_connection() as conn:
                with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
                    cursor.execute(statement, (after, limit), prepare=True)
                    yield cursor, None
                conn.rollback()
            return
        with self.recorder.datastore.transaction(commit=False) as wrapper:
            cursor = wrapper.sqlite_cursor  # iterable, and with plain tuples for rows
            cursor.row_factory = None
            cursor.execute(statement, (after, limit))
            yield cursor, self._log_ids

    def many(self, ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Every stored event of each of ``ids``, in version order (what the library's
        ``select_events`` gives, one query for many); absent ids are left out."""
        found: dict[UUID, list[StoredEvent]] = {}
        pending = list(ids)
        for start in range(0, len(pending), CHUNK):
            for event in self._many(pending[start : start + CHUNK]):
                found.setdefault(_as_uuid(event.originator_id), []).append(event)
        return found

    def head(self) -> int:
        """The highest position in the store (0 when empty)."""
        return int(self.recorder.max_notification_id() or 0)

    def count(self) -> int:
        if self.tables is None:
            return sum(len(batch) for batch in self.by_position())
        return int(self._fetch(sql.COUNT, ())[0][0])

    def by_position(
        self, after: int = 0, until: int | None = None, batch: int = 5000
    ) -> Iterator[list[StoredRecord]]:
        """Every event after position ``after`` (up to ``until``), in global order."""
        while True:
            if self.tables is None:
                records = self._notifications(after, until, batch)
            elif until is None:
                records = self._records(sql.LOG_PAGE, (after, batch))
            else:
                records = self._records(sql.LOG_PAGE_UNTIL, (after, until, batch))
            if not records:
                return
            yield records
            after = records[-1].position
            if len(records) < batch:
                return

    def by_aggregate(
        self, batch: int = 5000, low: UUID | None = None, high: UUID | None = None
    ) -> Iterator[list[StoredRecord]]:
        """Every event of the aggregates with ``low <= id < high`` (all when None),
        ordered by aggregate id and then version (the primary key's order)."""
        if self.tables is None:
            everything = sorted(
                (r for r in self._everything() if _within(r.originator_id, low, high)),
                key=lambda r: (r.originator_id, r.version),
            )
            for start in range(0, len(everything), batch):
                yield everything[start : start + batch]
            return
        bounds = [self._param(i) for i in (low, high) if i is not None]
        last: tuple[Any, int] | None = None
        while True:
            statement = sql.aggregates_page(low is not None, high is not None, last is not None)
            records = self._records(statement, (*bounds, *(last or ()), batch))
            if not records:
                return
            yield records
            last = (self._param(records[-1].originator_id), records[-1].version)
            if len(records) < batch:
                return

    def aggregate(self, originator_id: UUID) -> list[StoredRecord]:
        """One aggregate's events in version order (empty if there is none)."""
        if self.tables is None:
            return [r for r in self._everything() if r.originator_id == originator_id]
        return self._records(sql.AGGREGATE, (self._param(originator_id),))

    def existing(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` have at least one event."""
        if self.tables is None:
            return {i for i in ids if self.recorder.select_events(i, limit=1)}
        found: set[UUID] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            statement = sql.existing(self.postgres, len(chunk))
            rows = self._fetch(statement, self._id_params(chunk))
            found.update(self._uuid(row[0]) for row in rows)
        return found

    # -- SQL ----------------------------------------------------------------------------

    def _many(self, ids: list[UUID]) -> Iterator[StoredEvent]:
        if self.tables is None:
            if not isinstance(self.recorder, AggregateRecorder):
                raise TypeError(f"cannot batch-read events from {type(self.recorder).__name__}")
            for aggregate_id in ids:  # the public API: one aggregate at a time
                yield from self.recorder.select_events(aggregate_id)
            return
        statement = sql.many_aggregates(self.postgres, len(ids))
        convert = self._uuid
        for originator_id, version, topic, state in self._fetch(
            statement, self._id_params(ids), prepare=self.postgres
        ):
            yield StoredEvent(convert(originator_id), version, topic, bytes(state))

    def _records(self, template: str, params: Sequence[Any]) -> list[StoredRecord]:
        convert = self._uuid
        return [
            StoredRecord(position, convert(originator_id), version, topic, bytes(state))
            for position, originator_id, version, topic, state in self._fetch(template, params)
        ]

    def _fetch(
        self, template: str, params: Sequence[Any], prepare: bool = False
    ) -> list[tuple[Any, ...]]:
        assert self.tables is not None
        statement = self.tables.sql(template)
        if self.postgres:
            with self.recorder.datastore.get_connection() as conn:
                with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
                    cursor.execute(statement, params, prepare=prepare)
                    rows: list[tuple[Any, ...]] = cursor.fetchall()
                conn.rollback()
                return rows
        with self.recorder.datastore.transaction(commit=False) as wrapper:
            cursor = wrapper.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(statement, params)
            return list(cursor.fetchall())

    def _param(self, originator_id: UUID) -> Any:
        return originator_id if self.postgres else originator_id.hex

    def _id_params(self, ids: Sequence[UUID]) -> Sequence[Any]:
        return (list(ids),) if self.postgres else [i.hex for i in ids]

    # -- the public API (no SQL) ----------------------------------------------------------

    def _notifications(self, after: int, until: int | None, limit: int) -> list[StoredRecord]:
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, stop=until, inclusive_of_start=False
        )
        return [
            StoredRecord(n.id, _as_uuid(n.originator_id), n.originator_version, n.topic, n.state)
            for n in notifications
        ]

    def _everything(self) -> Iterator[StoredRecord]:
        for batch in self.by_position():
            yield from batch


def _within(value: UUID, low: UUID | None, high: UUID | None) -> bool:
    return (low is None or value >= low) and (high is None or value < high)


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def uuid_of_hex(
    text: str,
    new: Callable[[type[UUID]], UUID] = object.__new__,
    set_attribute: Callable[[object, str, Any], None] = object.__setattr__,
    unknown: SafeUUID = SafeUUID.unknown,
) -> UUID:
    """``UUID(text)``, as the SQLite recorder converts ids, for the 32 hex digits it
    stores, without ``UUID.__init__``'s string handling (the larger part of its cost).
    The same value and state (``int``, ``is_safe``) as ``UUID(text)``; anything else, and
    any error, goes through ``UUID(text)`` itself. (The defaults bind what it calls.)"""
    if len(text) == 32:
        try:
            number = int(text, 16)
        except ValueError:
            return UUID(text)
        if 0 <= number < 1 << 128:
            uuid = new(UUID)
            set_attribute(uuid, "int", number)
            set_attribute(uuid, "is_safe", unknown)
            return uuid
    return UUID(text)
