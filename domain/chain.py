"""Tamper evidence: every aggregate's events form a hash chain.

Each event carries ``prev_hash`` (the ``hash`` of the aggregate's previous event; 64 zeros
for the first) and ``hash``: SHA-256 (hex) of the event's canonical encoding, which covers

    ["taskexec-chain-v1", originator id, version, topic, timestamp, prev_hash, fields]

- ``originator id``: the aggregate id as text (``str(uuid)``, lowercase with dashes);
- ``version``: the event's version (1, 2, …); ``topic``: the stored event topic;
- ``timestamp``: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (a naive time is taken as UTC);
- ``fields``: every other field of the event (``actor``, ``input``, …) as a JSON object;
  ``hash`` itself, and a stored ``class_version``, are left out.

The encoding is JSON in UTF-8: keys sorted, no whitespace, no escapes beyond the ones
JSON requires, no NaN or infinities — exactly ``json.dumps(document, sort_keys=True,
separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")`` (floats
as Python writes them: ``0.1``, ``1e+16``). Values are hashed in their JSON form (a
tuple as a list, an integer key as text), so an event read back from the store has the
hash it was created with.

An aggregate becomes chained by deriving from ``ChainedAggregate`` and its base ``Event``
from ``ChainedAggregate.Event``: every event it triggers is then sealed when it is
created, with no change to the event classes or the command methods. Nothing here reads
a clock or does I/O; verifying a stored chain is the job of ``projections/audit/chain_check.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate

CHAIN_VERSION = "taskexec-chain-v1"
GENESIS = "0" * 64  # the prev_hash of an aggregate's first event
HASH_FIELDS = ("prev_hash", "hash")
# Fields that are part of the header (or the hash itself), not of the hashed ``fields``.
_NOT_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "prev_hash", "hash", "class_version"}
)
_PLAIN_JSON_LIMIT = 10_000  # containers looked into before giving up
_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# Floats Python writes without an exponent: 0 and magnitudes in [1e-4, 1e16).
_TAME_LOW, _TAME_HIGH = 1e-4, 1e16
_NOT_PLAIN, _TAME, _WILD = 0, 1, 2  # what _json_kind finds
_fast_encode: Callable[[Any], bytes] | None = None


def use_fast_encoder(encode: Callable[[Any], bytes] | None) -> None:
    """Let new events be sealed with ``encode`` where it gives the canonical bytes.

    ``encode`` must give exactly :func:`encode`'s bytes for every document of plain JSON
    values whose floats are tame (0, or a magnitude from 1e-4 to below 1e16: written
    without an exponent), and may raise (then the standard library encodes). msgspec's
    sorted JSON encoder does, several times faster (commands/canonical.py). The domain
    imports nothing outside the standard library, so a composition root installs it;
    ``None`` goes back to the standard library alone.
    """
    global _fast_encode
    _fast_encode = encode


@lru_cache(maxsize=64)  # a batch's events share their moment
def canonical_time(moment: datetime) -> str:
    """Fixed-width UTC text with microseconds: one text per instant."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def event_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed ``fields`` of an event's state (its ``__dict__`` or its stored state)."""
    return {key: value for key, value in state.items() if key not in _NOT_FIELDS}


def hashed_document(
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    timestamp: datetime,
    prev_hash: str,
    fields: Mapping[str, Any],
) -> list[Any]:
    """What is encoded and hashed (see the module docstring)."""
    return [
        CHAIN_VERSION,
        str(originator_id),
        originator_version,
        topic,
        canonical_time(timestamp),
        prev_hash,
        fields,
    ]


def canonical_encoding(
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    timestamp: datetime,
    prev_hash: str,
    fields: Mapping[str, Any],
) -> bytes:
    """The bytes that are hashed (see the module docstring)."""
    document = hashed_document(
        originator_id, originator_version, topic, timestamp, prev_hash, fields
    )
    return encode(document)


def encode(document: Any) -> bytes:
    """The canonical JSON encoding of ``document``."""
    return _encoder.encode(document).encode("utf-8", "surrogatepass")


def event_hash(
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    timestamp: datetime,
    prev_hash: str,
    fields: Mapping[str, Any],
) -> str:
    """SHA-256 (hex) of the canonical encoding; ``fields`` must be JSON values already."""
    encoded = canonical_encoding(
        originator_id, originator_version, topic, timestamp, prev_hash, fields
    )
    return hashlib.sha256(encoded).hexdigest()


def json_form(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, integer keys text).

    Raises ValueError for NaN and infinities and TypeError for values JSON cannot hold:
    an event that cannot be stored faithfully is refused when it is created.
    A value made only of plain JSON types (the usual case: decoded from a request) is its
    own JSON form and is returned as it is, without the round trip through text.
    """
    return _in_json_form(value)[0]


def _in_json_form(value: Any) -> tuple[Any, int]:
    """``value`` in its JSON form, and what ``_json_kind`` found in it (``_NOT_PLAIN``:
    it took the round trip through text, and its floats were not looked at)."""
    kind = _json_kind(value)
    if kind == _NOT_PLAIN:
        return json.loads(_encoder.encode(value)), kind
    return value, kind


def _json_kind(value: Any) -> int:
    """``_NOT_PLAIN`` unless ``value`` holds only dicts with text keys, lists, text,
    integers, finite floats, booleans and None (exact types: a subclass may encode
    differently); else ``_WILD`` if a float in it is not tame, else ``_TAME``."""
    pending: list[Any] = [[value]]  # containers still to look into
    seen = 0
    found = _TAME
    while pending:
        container = pending.pop()
        seen += 1
        if seen > _PLAIN_JSON_LIMIT:  # huge or cyclic: leave it to the encoder
            return _NOT_PLAIN
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    return _NOT_PLAIN
            items = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if kind is dict or kind is list:
                pending.append(item)
            elif kind is not float or not math.isfinite(item):
                return _NOT_PLAIN
            elif item and not _TAME_LOW <= abs(item) < _TAME_HIGH:
                found = _WILD
    return found


def topic_of(event_class: type[Any]) -> str:
    """The topic the event store records for ``event_class`` (its pinned ``TOPIC``, else
    ``module:Qualname``, as ``eventsourcing.utils.construct_topic`` makes it)."""
    topic = getattr(event_class, "TOPIC", None)
    if isinstance(topic, str) and topic:
        return topic
    return f"{event_class.__module__}:{event_class.__qualname__}"


def seal(event: Any) -> str:
    """The hash of a newly created event (its fields taken in their JSON form)."""
    fields, kind = _in_json_form(event_fields(vars(event)))
    document = hashed_document(
        event.originator_id,
        event.originator_version,
        topic_of(type(event)),
        event.timestamp,
        event.prev_hash,
        fields,
    )
    fast = _fast_encode
    if kind == _TAME and fast is not None:
        try:
            return hashlib.sha256(fast(document)).hexdigest()
        except (TypeError, ValueError, OverflowError):  # a lone surrogate, say
            pass
    return hashlib.sha256(encode(document)).hexdigest()


class ChainedAggregate(Aggregate):
    """An aggregate whose events carry ``prev_hash`` and ``hash``."""

    class Event(Aggregate.Event):
        """Base of chained events: sealed with their hash when created."""

        prev_hash: str
        hash: str

        def __post_init__(self) -> None:
            super().__post_init__()
            # Only a new event arrives without a hash: events read back from the store
            # are rebuilt without calling __init__, so they keep the hash they were stored with.
            if not self.hash:
                object.__setattr__(self, "hash", seal(self))

        def mutate(self, aggregate: Any) -> Any:
            mutated = super().mutate(aggregate)
            if mutated is not None:
                mutated._chain_head = self.hash
            return mutated

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Self:
        created: Self = super()._create(event_class, id=id, prev_hash=GENESIS, hash="", **kwargs)
        return created

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        super().trigger_event(event_class, prev_hash=self.chain_head, hash="", **kwargs)

    @property
    def chain_head(self) -> str:
        """The hash of the aggregate's latest event (GENESIS before any)."""
        head: str = self.__dict__.get("_chain_head", GENESIS)
        return head
