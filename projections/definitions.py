"""The task definitions read model: the latest content of every recorded definition."""

from __future__ import annotations

from typing import Any

from domain.definition_record import DefinitionRecord
from projections.db import Cursor
from projections.schema import ApplyError
from projections.sql import statement
from projections.tasks import json_text, timestamp_text

_EVENTS = (DefinitionRecord.Registered, DefinitionRecord.Revised)


class DefinitionProjection:
    """``definition_view_g<N>``: one row per definition, its document and revision."""

    name = "definitions"

    def tables(self, generation: int) -> list[str]:
        return [f"definition_view_g{generation}"]

    def ddl(self, generation: int) -> list[str]:
        (view,) = self.tables(generation)
        names = ("create_definition_view", "create_definition_type_index")
        return [statement(name).format(view=view, g=generation) for name in names]

    def upgrade(self, cur: Cursor, generation: int) -> None:
        """Nothing to add: the table has every column it ever had."""

    def remember(self) -> None:
        """Nothing is kept: definitions change rarely."""

    def forget(self) -> None:
        """Nothing is kept."""

    def apply(self, cur: Cursor, events: list[tuple[int, Any]], generation: int) -> None:
        (view,) = self.tables(generation)
        for position, event in events:
            if not isinstance(event, _EVENTS):  # most of the log: tasks
                continue
            try:
                if isinstance(event, DefinitionRecord.Registered):
                    _insert(cur, view, event)
                elif isinstance(event, DefinitionRecord.Revised):
                    _revise(cur, view, event)
            except Exception as exc:
                raise ApplyError(position, exc) from exc


def _columns(document: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        str(document["name"]),
        str(document.get("description", "")),
        str(document["type"]),
        str(document["version"]),
        json_text(document),
    )


def _insert(cur: Cursor, view: str, e: DefinitionRecord.Registered) -> None:
    at = timestamp_text(e.timestamp)
    cur.execute(
        statement("insert_definition").format(view=view),
        (e.definition_id, *_columns(e.document), e.originator_version, at, at),
    )


def _revise(cur: Cursor, view: str, e: DefinitionRecord.Revised) -> None:
    cur.execute(
        statement("revise_definition").format(view=view),
        (
            *_columns(e.document),
            e.originator_version,
            timestamp_text(e.timestamp),
            str(e.document["id"]),
        ),
    )
    if cur.deferred:  # no rowcount: fails the transaction (then the batch runs again
        cur.execute(  # the long way, which raises the LookupError below)
            statement("expect_definition").format(view=view), (str(e.document["id"]),)
        )
    elif cur.rowcount != 1:
        raise LookupError(f"definition {e.document['id']} is missing from the read model")
