"""Reads the event tables as auditors need them, on SQLite and PostgreSQL.

``EventStoreReader`` reads stored events in large batches, in the store's global order
(positions) or aggregate by aggregate (id, then version); ``EventDecoder`` turns a stored
record into its state and event. Reading the eventsourcing tables directly: the library
has no "every aggregate, in order" query. Synchronous: call it from threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row

from commands.service import TaskService, UndecodableEvent

_json = msgspec.json.Encoder()


Progress = Callable[[int, int], None]  # (done, total)


class StoredRecord(NamedTuple):
    """One row of the event store, as stored (a tuple: millions are made per replay)."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


class EventStoreReader:
    """Batches of stored events from ``service``'s event store (read-only)."""

    def __init__(self, service: TaskService) -> None:
        recorder: Any = service.recorder
        self._datastore: Any = recorder.datastore
        self._table: str = recorder.events_table_name
        self._postgres = isinstance(self._datastore, PostgresDatastore)

    def head(self) -> int:
        """The highest position in the store (0 when empty)."""
        rows = self._query("SELECT MAX({rowid}) FROM {table}", ())
        return int(rows[0][0] or 0) if rows else 0

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM {table}", ())
        return int(rows[0][0])

    def by_position(
        self, after: int = 0, until: int | None = None, batch: int = 5000
    ) -> Iterator[list[StoredRecord]]:
        """Every event after position ``after`` (up to ``until``), in global order."""
        while True:
            if until is None:
                rows = self._query(
                    f"SELECT {{rowid}}, {_COLUMNS} FROM {{table}} WHERE {{rowid}} > ? "
                    "ORDER BY {rowid} LIMIT ?",
                    (after, batch),
                )
            else:
                rows = self._query(
                    f"SELECT {{rowid}}, {_COLUMNS} FROM {{table}} "
                    "WHERE {rowid} > ? AND {rowid} <= ? ORDER BY {rowid} LIMIT ?",
                    (after, until, batch),
                )
            if not rows:
                return
            records = [self._record(row) for row in rows]
            yield records
            after = records[-1].position
            if len(rows) < batch:
                return

    def by_aggregate(
        self, batch: int = 5000, low: UUID | None = None, high: UUID | None = None
    ) -> Iterator[list[StoredRecord]]:
        """Every event of the aggregates with ``low <= id < high`` (all when None),
        ordered by aggregate id and then version (the primary key's order)."""
        bounds: list[str] = []
        params: list[Any] = []
        if low is not None:
            bounds.append("originator_id >= ?")
            params.append(self._id_param(low))
        if high is not None:
            bounds.append("originator_id < ?")
            params.append(self._id_param(high))
        last: tuple[Any, int] | None = None
        while True:
            conditions = list(bounds)
            if last is not None:
                conditions.append("(originator_id, originator_version) > (?, ?)")
            where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
            rows = self._query(
                f"SELECT {{rowid}}, {_COLUMNS} FROM {{table}} {where}"
                "ORDER BY originator_id, originator_version LIMIT ?",
                (*params, *(last or ()), batch),
            )
            if not rows:
                return
            yield [self._record(row) for row in rows]
            last = (rows[-1][1], rows[-1][2])
            if len(rows) < batch:
                return

    def aggregate(self, originator_id: UUID) -> list[StoredRecord]:
        """One aggregate's events in version order (empty if there is none)."""
        rows = self._query(
            f"SELECT {{rowid}}, {_COLUMNS} FROM {{table}} WHERE originator_id = ? "
            "ORDER BY originator_version",
            (self._id_param(originator_id),),
        )
        return [self._record(row) for row in rows]

    def existing(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` have at least one event."""
        found: set[UUID] = set()
        for start in range(0, len(ids), 500):
            chunk = [self._id_param(i) for i in ids[start : start + 500]]
            marks = ", ".join("?" for _ in chunk)
            rows = self._query(
                f"SELECT DISTINCT originator_id FROM {{table}} WHERE originator_id IN ({marks})",
                tuple(chunk),
            )
            found.update(self._uuid(row[0]) for row in rows)
        return found

    # -- the two dialects -------------------------------------------------------------

    def _id_param(self, originator_id: UUID) -> Any:
        return originator_id if self._postgres else originator_id.hex

    def _uuid(self, value: Any) -> UUID:
        return value if isinstance(value, UUID) else UUID(hex=value)

    def _record(self, row: Sequence[Any]) -> StoredRecord:
        return StoredRecord(int(row[0]), self._uuid(row[1]), int(row[2]), row[3], bytes(row[4]))

    def _query(self, template: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        if self._postgres:
            table = f'"{self._datastore.schema}"."{self._table}"'
            text = template.format(rowid="notification_id", table=table).replace("?", "%s")
            with self._datastore.get_connection() as conn:
                cursor = conn.cursor(binary=True, row_factory=tuple_row)
                try:
                    cursor.execute(text, params)
                    rows: list[Sequence[Any]] = cursor.fetchall()
                finally:
                    cursor.close()
                    conn.rollback()
                return rows
        text = template.format(rowid="rowid", table=self._table)
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(text, params)
            return [tuple(row) for row in cursor.fetchall()]


_COLUMNS = "originator_id, originator_version, topic, state"


class EventDecoder:
    """Stored rows back to their stored state (for hashing) and to domain events."""

    def __init__(self, service: TaskService) -> None:
        self._mapper = service.mapper

    def state(self, record: StoredRecord) -> dict[str, Any]:
        """The event's state exactly as stored (before any upcasting)."""
        data = record.state
        if self._mapper.cipher:
            data = self._mapper.cipher.decrypt(data)
        if self._mapper.compressor:
            data = self._mapper.compressor.decompress(data)
        state = self._mapper.transcoder.decode(data)
        if not isinstance(state, dict):
            raise ValueError(f"stored state is a {type(state).__name__}, not an object")
        return state

    def decode(self, record: StoredRecord) -> tuple[dict[str, Any], Any]:
        """(stored state, domain event); UndecodableEvent names the position otherwise."""
        try:
            state = self.state(record)
            if not isinstance(state.get("timestamp"), datetime):
                raise ValueError("no timestamp")
            return state, self.event(record, state)
        except Exception as exc:
            raise UndecodableEvent(record.position, exc) from exc

    def event(self, record: StoredRecord, state: dict[str, Any], copy: bool = True) -> Any:
        """The domain event of ``record`` from its decoded ``state`` (as the library's
        ``Mapper.to_domain_event`` builds it, upcasting included). Without ``copy`` the
        event takes ``state`` over as its attributes."""
        cls = resolve_topic(record.topic)
        event_state = dict(state) if copy else state
        event_state["originator_id"] = record.originator_id
        event_state["originator_version"] = record.version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event
