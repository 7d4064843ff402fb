"""The task definitions read model: the latest content of every recorded definition."""

from __future__ import annotations

from typing import Any

from domain.definition_record import DefinitionRecord
from projections.db import Cursor
from projections.schema import ApplyError
from projections.tasks import json_text, timestamp_text

_EVENTS = (DefinitionRecord.Registered, DefinitionRecord.Revised)


class DefinitionProjection:
    """``definition_view_g<N>``: one row per definition, its document and revision."""

    name = "definitions"

    def tables(self, generation: int) -> list[str]:
        return [f"definition_view_g{generation}"]

    def ddl(self, generation: int) -> list[str]:
        (view,) = self.tables(generation)
        return [
            f"""CREATE TABLE IF NOT EXISTS {view} (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                type TEXT NOT NULL,
                version TEXT NOT NULL,
                revision INTEGER NOT NULL,
                document TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            f"CREATE INDEX IF NOT EXISTS ix_definition_type_g{generation} ON {view} (type, id)",
        ]

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
        f"INSERT INTO {view} (id, name, description, type, version, document, revision, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.definition_id, *_columns(e.document), e.originator_version, at, at),
    )


def _revise(cur: Cursor, view: str, e: DefinitionRecord.Revised) -> None:
    cur.execute(
        f"UPDATE {view} SET name = ?, description = ?, type = ?, version = ?, document = ?, "
        "revision = ?, updated_at = ? WHERE id = ?",
        (
            *_columns(e.document),
            e.originator_version,
            timestamp_text(e.timestamp),
            str(e.document["id"]),
        ),
    )
    if cur.deferred:  # no rowcount: fails the transaction (then the batch runs again
        cur.execute(  # the long way, which raises the LookupError below)
            f"SELECT 1 / (SELECT count(*)::int FROM {view} WHERE id = ?) AS found",
            (str(e.document["id"]),),
        )
    elif cur.rowcount != 1:
        raise LookupError(f"definition {e.document['id']} is missing from the read model")
