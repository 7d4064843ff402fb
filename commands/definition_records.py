"""The task definitions' history in the event store, and the output schema a task is
held to.

Each start registers the catalog: a new or changed definition records an event on its
``DefinitionRecord``, so a task records the revision it was submitted against, and its
output is validated against that revision's outputSchema, not whatever the definition
says today.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import IntegrityError

from commands.catalog import DefinitionCatalog, SchemaValidator, Violation
from domain.definition import TaskDefinition
from domain.definition_record import DefinitionRecord, definition_record_id
from domain.task import Task
from domain.values import SYSTEM


def register_definitions(
    repository: Repository[UUID],
    save: Callable[..., object],
    definitions: Sequence[TaskDefinition],
    clock: Callable[[], datetime],
) -> dict[str, int]:
    """Record new and changed definitions in one transaction (``save``); unchanged ones
    record nothing. Returns every definition's revision (the store's version of its
    record). Several replicas may start at once: a lost race (IntegrityError) is retried,
    and the retry finds the winner's events and records nothing again."""
    for attempt in range(3):
        at = clock()
        changed: list[DefinitionRecord] = []
        revisions: dict[str, int] = {}
        for definition in definitions:
            document = definition.to_document()
            try:
                record: Any = repository.get(definition_record_id(definition.id))
            except AggregateNotFoundError:
                record = DefinitionRecord.register(
                    definition_id=definition.id, document=document, at=at, actor=SYSTEM
                )
                changed.append(record)
            else:
                if record.revise(document=document, at=at, actor=SYSTEM):
                    changed.append(record)
            revisions[definition.id] = record.revision
        try:
            if changed:
                save(*changed)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        return revisions
    raise AssertionError("unreachable")


class OutputSchemas:
    """The outputSchema of each (definition, revision), as a validator built once."""

    def __init__(self, repository: Repository[UUID], catalog: DefinitionCatalog) -> None:
        self._repository = repository
        self._catalog = catalog
        self._validators: dict[tuple[str, int], SchemaValidator] = {}

    def violations(self, task: Task, output: Any) -> list[Violation]:
        """Check ``output`` against the outputSchema of the definition revision ``task``
        was submitted against."""
        key = (task.definition_id, task.definition_revision)
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = self._validator(*key)
        return validator.violations(output)

    def _validator(self, definition_id: str, revision: int) -> SchemaValidator:
        if revision:
            try:
                record: Any = self._repository.get(
                    definition_record_id(definition_id), version=revision
                )
                return SchemaValidator(record.document.get("outputSchema") or {})
            except AggregateNotFoundError:
                pass
        definition = self._catalog.get(definition_id)
        return SchemaValidator(definition.output_schema if definition else {})
