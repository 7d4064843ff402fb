"""Read the notification log in large pages, decoded, at a fraction of the library's cost.

Projections (catch-up, rebuild) and the relay read the whole log through
``TaskService.read_log``, and the library's per-event path (``select_notifications``, then
``Mapper.to_domain_event``) is most of a catch-up's Python (docs/benchmarks.md, "The write
side's shortcuts, measured"). On SQLite and PostgreSQL one query per page reads plain
tuples and builds each event as ``Mapper.to_domain_event`` does (the same topic, state, id
conversion and ``class_version`` upcasting), with what depends only on the topic looked
up once; the rows are those ``select_notifications(after, limit, inclusive_of_start=False)``
selects. Anything else (a cipher, a compressor, another transcoder, another recorder such
as the in-memory one of commands/memory.py) takes the library's public path, whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, SafeUUID

from eventsourcing.persistence import (
    InterfaceError,
    Mapper,
    OperationalError,
    find_id_convertor,
    pass_through_convertor,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row

from commands.gc_pause import gc_paused
from commands.transcoder import PayloadSafeTranscoder

Decoded = list[tuple[int, Any]]
Undecodable = Callable[[int, Exception], Exception]  # (position, cause) -> what to raise
IdConvertor = Callable[[Any], Any]
_ATTEMPTS = 10
_Row = tuple[int, Any, int, str, bytes]  # notification id, originator id and version, topic, state


class UndecodableEvent(Exception):
    """A stored event cannot be turned back into a domain event."""

    def __init__(self, position: int, cause: Exception) -> None:
        super().__init__(f"notification {position} cannot be decoded: {cause!r}")
        self.position = position


class _Topic:
    """What decoding needs to know about one topic, found once."""

    __slots__ = ("class_version", "cls", "plain_id")

    def __init__(self, topic: str) -> None:
        self.cls: type[Any] = resolve_topic(topic)
        self.class_version: int = getattr(self.cls, "class_version", 1)
        self.plain_id: type[Any] | None = None  # an id type the library keeps as it is

    def originator_id(self, value: Any) -> Any:
        """The library's conversion of a stored id (``find_id_convertor``)."""
        cls: Any = self.cls
        id_type: Any = type(value)
        convert = find_id_convertor(cls, id_type)
        if convert is pass_through_convertor:
            self.plain_id = id_type
        return convert(value)


class LogReader:
    """``read(after, limit)``: the decoded events after position ``after``, in order."""

    def __init__(
        self, recorder: Any, mapper: Mapper[Any], undecodable: Undecodable = UndecodableEvent
    ) -> None:
        self._recorder = recorder
        self._mapper = mapper
        self._undecodable = undecodable
        self._topics: dict[str, _Topic] = {}
        self._sqlite = isinstance(recorder, SQLiteApplicationRecorder)
        self._postgres = isinstance(recorder, PostgresApplicationRecorder)
        self.fast = (
            (self._sqlite or self._postgres)
            and type(mapper.transcoder) is PayloadSafeTranscoder
            and not mapper.cipher
            and not mapper.compressor
        )

    def read(self, after: int, limit: int) -> Decoded:
        if not self.fast:
            return self.read_with_library(after, limit)
        for attempt in range(_ATTEMPTS):
            try:
                with gc_paused():  # a page of young objects (commands/gc_pause.py)
                    return self._read(after, limit)
            except (InterfaceError, OperationalError):  # the connection went away
                # Retried as the library's PostgreSQL select_notifications retries.
                if not self._postgres or attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def _read(self, after: int, limit: int) -> Decoded:
        decode = self._mapper.transcoder.decode
        topics = self._topics
        decoded: Decoded = []
        append = decoded.append
        # Rows are decoded as they are fetched: each row dies young, which keeps down
        # the garbage collector's work.
        with self._rows(after, limit) as (rows, convert):
            for position, originator_id, version, topic, state in rows:
                try:
                    known = topics.get(topic)
                    if known is None:
                        known = topics[topic] = _Topic(topic)
                    event_state: dict[str, Any] = decode(state)
                    if convert is not None:
                        originator_id = convert(originator_id)
                    if type(originator_id) is not known.plain_id:
                        originator_id = known.originator_id(originator_id)
                    event_state["originator_id"] = originator_id
                    event_state["originator_version"] = version
                    from_version = event_state.pop("class_version", 1)
                    while from_version < known.class_version:
                        upcast = f"upcast_v{from_version}_v{from_version + 1}"
                        getattr(known.cls, upcast)(event_state)
                        from_version += 1
                    event = object.__new__(known.cls)
                    object.__setattr__(event, "__dict__", event_state)
                except Exception as exc:
                    raise self._undecodable(position, exc) from exc
                append((position, event))
        return decoded

    def read_with_library(self, after: int, limit: int) -> Decoded:
        """The library's own path (the reference the fast path must agree with)."""
        notifications = self._recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        decoded: Decoded = []
        for notification in notifications:
            try:
                decoded.append((notification.id, self._mapper.to_domain_event(notification)))
            except Exception as exc:
                raise self._undecodable(notification.id, exc) from exc
        return decoded

    @contextmanager
    def _rows(self, after: int, limit: int) -> Iterator[tuple[Iterable[_Row], IdConvertor | None]]:
        """The rows ``select_notifications`` would select, as tuples, and how the
        recorder converts their ids (None: as they come)."""
        recorder = self._recorder
        table = recorder.events_table_name
        if self._postgres:
            datastore = recorder.datastore
            statement = (
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f'FROM "{datastore.schema}"."{table}" '
                "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            with datastore.get_connection() as conn:
                with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
                    cursor.execute(statement, (after, limit), prepare=True)
                    yield cursor, None
                conn.rollback()
            return
        convert = _uuid if recorder.datastore.originator_id_type == "uuid" else None
        with recorder.datastore.transaction(commit=False) as wrapper:
            cursor = wrapper.sqlite_cursor  # iterable, and with plain tuples for rows
            cursor.row_factory = None
            cursor.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            yield cursor, convert


def _uuid(
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
