"""Audit: read the event store as auditors need it.

- ``EventStoreReader`` reads stored events in large batches, either in the store's
  global order (positions) or aggregate by aggregate (id, then version), on SQLite and
  PostgreSQL. It reads the eventsourcing tables directly: the library has no "every
  aggregate, in order" query, and reading one aggregate per query would make a full
  verification of a large store take hours.
- ``task_history`` is one task's events in order (``GET /tasks/{id}/history``).
- ``export`` writes every event, in global order, as JSON lines, batch by batch.
- ``check_chain`` checks one aggregate's hash chain (see domain/chain.py).

Public names and ``data`` come from the outbox mapping (``PUBLIC_TYPES``, ``event_data``)
so that history, export and the NATS events share one vocabulary; an event type that has
no public mapping yet still appears, named after its topic, with its fields in camelCase.
Synchronous, like the rest of the write side: call it from threads.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row

from commands import canonical
from commands.outbox import PUBLIC_TYPES, event_data, event_id, rfc3339
from commands.service import TaskService, UndecodableEvent
from domain.apikey import ApiKey
from domain.chain import GENESIS, canonical_time, encode, event_fields, hashed_document
from domain.definition_record import DefinitionRecord
from domain.task import Task

_json = msgspec.json.Encoder()
Progress = Callable[[int, int], None]  # (done, total)

# What every event carries besides its own fields; not repeated in generic ``data``.
_ENVELOPE = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "originator_topic",
        "actor",
        "prev_hash",
        "hash",
    }
)


class StoredRecord(NamedTuple):
    """One row of the event store, as stored (a tuple: millions are made per replay)."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


# -- reading the store -------------------------------------------------------------------


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


# -- decoding --------------------------------------------------------------------------


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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while replaying.

    A replay allocates millions of small, acyclic objects; the collector's passes over the
    growing heap cost more than the replay itself (measured: 28k -> 54k events/s).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- vocabulary ------------------------------------------------------------------------


def aggregate_kind(event: Any) -> str:
    """``task``, ``definition`` or ``apikey`` (else the topic's second part)."""
    if isinstance(event, Task.Event):
        return "task"
    if isinstance(event, DefinitionRecord.Event):
        return "definition"
    if isinstance(event, ApiKey.Event):
        return "apikey"
    return topic_parts(_topic(event))[0]


def topic_parts(topic: str) -> tuple[str, str]:
    """``taskexec.task.completed.v1`` -> (``task``, ``completed``)."""
    parts = topic.split(".")
    if len(parts) >= 4 and parts[0] == "taskexec":
        return parts[1], ".".join(parts[2:-1])
    return "unknown", topic


def public_type(event: Any) -> str:
    """The public name of an event: ``PUBLIC_TYPES``' name, else the topic's."""
    public = PUBLIC_TYPES.get(type(event))
    if public is not None:
        return public[0]
    return topic_parts(_topic(event))[1]


def status_after(event: Any) -> str | None:
    public = PUBLIC_TYPES.get(type(event))
    return public[1] if public is not None else None


def public_data(event: Any) -> dict[str, Any]:
    """The event's fields in the public camelCase vocabulary (the NATS events' ``data``)."""
    if type(event) in PUBLIC_TYPES:
        return event_data(event)
    return {camel(key): value for key, value in vars(event).items() if key not in _ENVELOPE}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _topic(event: Any) -> str:
    topic = getattr(type(event), "TOPIC", None)
    return topic if isinstance(topic, str) else f"{type(event).__module__}:{type(event).__name__}"


# -- history ---------------------------------------------------------------------------


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


def task_history(service: TaskService, task_id: UUID) -> list[dict[str, Any]] | None:
    """The task's events in order, or None if no task has this id.

    Only a task's events are shown: the id of an API key or a definition record is
    "not found" here, not a way to read other aggregates.
    """
    reader = EventStoreReader(service)
    decoder = EventDecoder(service)
    records = reader.aggregate(task_id)
    events = [(r.position, decoder.decode(r)[1]) for r in records]
    if not events or not isinstance(events[0][1], Task.Event):
        return None
    return [history_entry(event, position) for position, event in events]


# -- export ----------------------------------------------------------------------------


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
    reader = EventStoreReader(service)
    decoder = EventDecoder(service)
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


# -- the hash chain of one aggregate -----------------------------------------------------


def hash_matches(stored_hash: str, document: list[Any]) -> bool:
    """Whether ``document`` hashes to ``stored_hash`` under the canonical encoding.

    The fast encoding (commands/canonical.py) is tried first, whatever the floats: a
    match means its bytes are the canonical ones (SHA-256 is collision resistant); a
    mismatch is decided by the canonical encoder itself.
    """
    try:
        if hashlib.sha256(canonical.encode(document)).hexdigest() == stored_hash:
            return True
    except (TypeError, ValueError, UnicodeError):
        pass
    try:
        return hashlib.sha256(encode(document)).hexdigest() == stored_hash
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class ChainFault:
    """Something wrong with one aggregate's stored events."""

    version: int | None
    kind: str  # gap | missing-hash | altered | broken-link | undecodable
    message: str


@dataclass
class ChainLink:
    """What the chain check needs of one stored event."""

    version: int
    topic: str
    state: dict[str, Any] | None  # None: the stored bytes did not decode
    error: str = ""


def check_chain(originator_id: UUID | str, links: Sequence[ChainLink]) -> list[ChainFault]:
    """Check one aggregate's events, in version order: versions 1, 2, … without a gap;
    each event's hash recomputed from its content; each ``prev_hash`` equal to the
    previous event's hash (GENESIS for version 1)."""
    faults: list[ChainFault] = []
    text_id = str(originator_id)
    expected = 1
    previous: str | None = GENESIS
    for link in links:
        if link.version != expected:
            missing = (
                f"version {expected}"
                if link.version == expected + 1
                else f"versions {expected} to {link.version - 1}"
            )
            faults.append(ChainFault(link.version, "gap", f"{missing} missing (deleted?)"))
            previous = None  # nothing to link to
        expected = link.version + 1
        if link.state is None:
            faults.append(ChainFault(link.version, "undecodable", f"undecodable: {link.error}"))
            previous = None
            continue
        state = link.state
        stored_hash, prev_hash = state.get("hash"), state.get("prev_hash")
        if not isinstance(stored_hash, str) or not stored_hash or not isinstance(prev_hash, str):
            faults.append(ChainFault(link.version, "missing-hash", "no hash chain fields"))
            previous = None
            continue
        timestamp = state.get("timestamp")
        if not isinstance(timestamp, datetime) or not hash_matches(
            stored_hash,
            hashed_document(
                text_id, link.version, link.topic, timestamp, prev_hash, event_fields(state)
            ),
        ):
            faults.append(
                ChainFault(
                    link.version,
                    "altered",
                    "content does not match its hash (the stored event was altered)",
                )
            )
        if previous is not None and prev_hash != previous:
            faults.append(
                ChainFault(
                    link.version,
                    "broken-link",
                    f"prev_hash does not match the hash of version {link.version - 1}"
                    if link.version > 1
                    else "prev_hash of the first event is not the genesis value",
                )
            )
        previous = stored_hash
    return faults
