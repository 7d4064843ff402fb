"""Stored events back into domain events: the one decoder of every reader of the store.

It does what eventsourcing's ``Mapper.to_domain_event`` does (decrypt, decompress,
transcode, convert the id, upcast by ``class_version``), and looks up once what depends
only on the topic. ``events`` decodes a page of log rows as fast as it can: the relay and
the projections read that way. ``decode`` also returns the stored state, which audit
needs because hashes cover the state as it was stored, before any upcasting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import (
    Mapper,
    StoredEvent,
    find_id_convertor,
    pass_through_convertor,
)
from eventsourcing.utils import resolve_topic

Decoded = list[tuple[int, Any]]  # (position, domain event)
IdConvertor = Callable[[Any], Any]


class UndecodableEvent(Exception):
    """A stored event cannot be turned back into a domain event."""

    def __init__(self, position: int, cause: Exception) -> None:
        super().__init__(f"notification {position} cannot be decoded: {cause!r}")
        self.position = position


class StoredRecord(NamedTuple):
    """One row of the event store, as stored (a tuple: millions are made per replay)."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


class TopicFacts:
    """What decoding needs to know about one topic, found once."""

    __slots__ = ("class_version", "cls", "plain_id")

    def __init__(self, topic: str) -> None:
        self.cls: type[Any] = resolve_topic(topic)
        self.class_version: int = getattr(self.cls, "class_version", 1)
        self.plain_id: type[Any] | None = None  # an id type the library keeps as it is

    def originator_id(self, value: Any) -> Any:
        """The library's conversion of a stored id (``find_id_convertor``)."""
        if type(value) is self.plain_id:
            return value
        cls: Any = self.cls
        id_type: Any = type(value)
        convert = find_id_convertor(cls, id_type)
        if convert is pass_through_convertor:
            self.plain_id = id_type
        return convert(value)

    def event(self, state: dict[str, Any], originator_id: Any, version: int) -> Any:
        """The domain event whose attributes are ``state`` (taken over, upcast)."""
        state["originator_id"] = originator_id
        state["originator_version"] = version
        from_version = state.pop("class_version", 1)
        while from_version < self.class_version:
            getattr(self.cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(self.cls)
        object.__setattr__(event, "__dict__", state)
        return event


class EventDecoder:
    """Stored events of one store (its ``mapper``) back to states and domain events."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self._mapper = mapper
        self._topics: dict[str, TopicFacts] = {}
        plain = not mapper.cipher and not mapper.compressor
        #: Stored bytes -> the state as stored.
        self.load: Callable[[bytes], Any] = mapper.transcoder.decode if plain else self._load

    def facts(self, topic: str) -> TopicFacts:
        known = self._topics.get(topic)
        if known is None:
            known = self._topics[topic] = TopicFacts(topic)
        return known

    def events(self, rows: Iterable[Any], convert: IdConvertor | None = None) -> Decoded:
        """(position, event) of each row ``(position, originator id, version, topic,
        state)``, ids converted by ``convert`` first if given. Rows are decoded as they
        come: each one dies young, which keeps the garbage collector's work down."""
        load = self.load
        topics = self._topics
        decoded: Decoded = []
        append = decoded.append
        for position, originator_id, version, topic, data in rows:
            try:
                known = topics.get(topic) or self.facts(topic)
                if convert is not None:
                    originator_id = convert(originator_id)
                if type(originator_id) is not known.plain_id:
                    originator_id = known.originator_id(originator_id)
                append((position, known.event(load(data), originator_id, version)))
            except Exception as exc:
                raise UndecodableEvent(position, exc) from exc
        return decoded

    def domain_event(self, stored: StoredEvent) -> Any:
        """What ``Mapper.to_domain_event(stored)`` returns."""
        known = self.facts(stored.topic)
        originator_id = known.originator_id(stored.originator_id)
        return known.event(self.load(stored.state), originator_id, stored.originator_version)

    def state(self, record: StoredRecord) -> dict[str, Any]:
        """The event's state exactly as stored (before any upcasting)."""
        state = self.load(record.state)
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
        """The domain event of ``record`` from its decoded ``state``; without ``copy``
        the event takes ``state`` over as its attributes."""
        known = self.facts(record.topic)
        originator_id = known.originator_id(record.originator_id)
        return known.event(dict(state) if copy else state, originator_id, record.version)

    def _load(self, data: bytes) -> Any:
        mapper = self._mapper
        if mapper.cipher:
            data = mapper.cipher.decrypt(data)
        if mapper.compressor:
            data = mapper.compressor.decompress(data)
        return mapper.transcoder.decode(data)
