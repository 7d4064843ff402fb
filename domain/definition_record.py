"""DefinitionRecord: the recorded history of one task definition.

Loading definition files records a ``Registered`` event the first time and a ``Revised``
event whenever the file's content changes; an unchanged file records nothing. The
record's version (1, 2, …) is the store's revision of the definition, beside the
semantic ``version`` the file itself declares.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.chain import ChainedAggregate
from domain.values import Actor

_NAMESPACE = uuid5(NAMESPACE_URL, "https://taskexec.io/definitions")


def definition_record_id(definition_id: str) -> UUID:
    """The record of a definition has a stable id derived from the definition's id."""
    return uuid5(_NAMESPACE, definition_id)


def digest(document: dict[str, Any]) -> str:
    """A stable fingerprint of a definition document (key order does not matter)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DefinitionRecord(ChainedAggregate):
    """Every version a task definition has had."""

    TOPIC = "taskexec.definition.v1"

    class Event(ChainedAggregate.Event):
        actor: dict[str, str]

    class Created(Event, Aggregate.Created):
        """Declared only so that the library does not derive one with an inherited topic."""

        TOPIC = "taskexec.definition.created.v1"

    class Registered(Event, Aggregate.Created):
        TOPIC = "taskexec.definition.registered.v1"
        definition_id: str
        document: dict[str, Any]
        digest: str

        def apply(self, aggregate: Any) -> None:
            record: DefinitionRecord = aggregate
            record.definition_id = self.definition_id
            record.document = self.document
            record.digest = self.digest

    class Revised(Event):
        TOPIC = "taskexec.definition.revised.v1"
        document: dict[str, Any]
        digest: str

        def apply(self, aggregate: Any) -> None:
            record: DefinitionRecord = aggregate
            record.document = self.document
            record.digest = self.digest

    def __init__(self) -> None:
        self.definition_id: str = ""
        self.document: dict[str, Any] = {}
        self.digest: str = ""

    @classmethod
    def register(
        cls, *, definition_id: str, document: dict[str, Any], at: datetime, actor: Actor
    ) -> DefinitionRecord:
        return cls._create(
            cls.Registered,
            id=definition_record_id(definition_id),
            timestamp=at,
            actor=actor.as_dict(),
            definition_id=definition_id,
            document=document,
            digest=digest(document),
        )

    def revise(self, *, document: dict[str, Any], at: datetime, actor: Actor) -> bool:
        """Record the new content; False (and no event) when nothing changed."""
        new_digest = digest(document)
        if new_digest == self.digest:
            return False
        self.trigger_event(
            self.Revised, timestamp=at, actor=actor.as_dict(), document=document, digest=new_digest
        )
        return True

    @property
    def revision(self) -> int:
        return self.version
