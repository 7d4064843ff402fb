"""The task read model: one denormalised row per task, kept by projecting task events.

Every event is applied with plain SQL in the runner's transaction, together with the
projection's position, so a replayed position can never apply twice.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from domain.task import Task
from projections.db import Cursor, Database

PROJECTION_NAME = "tasks"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS task_view (
        id TEXT PRIMARY KEY,
        definition_id TEXT NOT NULL,
        definition_version TEXT NOT NULL,
        workflow_instance_id TEXT,
        status TEXT NOT NULL,
        type TEXT NOT NULL,
        priority TEXT NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error TEXT,
        attempts INTEGER NOT NULL,
        start_time TEXT,
        end_time TEXT,
        execution_environment TEXT,
        cancel_reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS projection_position (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )""",
]


def timestamp_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TaskProjection:
    """Applies task events to ``task_view``."""

    name = PROJECTION_NAME

    def create_tables(self, db: Database) -> None:
        with db.transaction() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def position(self, cur: Cursor) -> int:
        row = cur.execute(
            "SELECT position FROM projection_position WHERE name = ?", (self.name,)
        ).fetchone()
        return int(row["position"]) if row else 0

    def set_position(self, cur: Cursor, position: int) -> None:
        cur.execute(
            "INSERT INTO projection_position (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position "
            "WHERE projection_position.position < excluded.position",
            (self.name, position),
        )
        if cur.rowcount != 1:
            raise RuntimeError(f"projection {self.name} position {position} was already recorded")

    def apply(self, cur: Cursor, event: Any) -> None:
        """Apply one event; events this projection does not know are ignored."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(cur, event)


def _submitted(cur: Cursor, e: Task.Submitted) -> None:
    at = timestamp_text(e.timestamp)
    cur.execute(
        "INSERT INTO task_view (id, definition_id, definition_version, workflow_instance_id, "
        "status, type, priority, input, attempts, created_at, updated_at, version) "
        "VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?, 0, ?, ?, ?)",
        (
            str(e.originator_id),
            e.definition_id,
            e.definition_version,
            e.workflow_instance_id,
            e.task_type,
            e.priority,
            json.dumps(e.input),
            at,
            at,
            e.originator_version,
        ),
    )


def _update(cur: Cursor, e: Any, assignments: str, params: tuple[Any, ...]) -> None:
    cur.execute(
        f"UPDATE task_view SET {assignments}, updated_at = ?, version = ? WHERE id = ?",
        (*params, timestamp_text(e.timestamp), e.originator_version, str(e.originator_id)),
    )
    if cur.rowcount != 1:
        raise LookupError(f"task {e.originator_id} is missing from the read model")


def _started(cur: Cursor, e: Task.Started) -> None:
    _update(
        cur,
        e,
        "status = 'RUNNING', attempts = ?, start_time = ?, end_time = NULL, "
        "execution_environment = ?",
        (e.attempt, timestamp_text(e.timestamp), e.worker),
    )


def _completed(cur: Cursor, e: Task.Completed) -> None:
    _update(
        cur,
        e,
        "status = 'COMPLETED', output = ?, end_time = ?",
        (json.dumps(e.output), timestamp_text(e.timestamp)),
    )


def _failed(cur: Cursor, e: Task.Failed) -> None:
    error = {"type": e.error_type, "message": e.error_message}
    _update(
        cur,
        e,
        "status = 'FAILED', error = ?, end_time = ?",
        (json.dumps(error), timestamp_text(e.timestamp)),
    )


def _cancelled(cur: Cursor, e: Task.Cancelled) -> None:
    _update(
        cur,
        e,
        "status = 'CANCELLED', cancel_reason = ?, end_time = ?",
        (e.reason, timestamp_text(e.timestamp)),
    )


_HANDLERS: dict[type[Any], Any] = {
    Task.Submitted: _submitted,
    Task.Started: _started,
    Task.Completed: _completed,
    Task.Failed: _failed,
    Task.Cancelled: _cancelled,
}
