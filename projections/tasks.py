"""The task read model: one denormalised row per task, plus exact counts per status and type.

A batch of events is applied in memory first (one SELECT for the rows it touches), then
written with two ``executemany`` calls and one counter upsert: the cost per batch, not per
event, is what bounds catch-up and rebuild speed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from domain.task import Task
from projections.db import Cursor
from projections.schema import ApplyError

_json = msgspec.json.Encoder()

COLUMNS = (
    "id",
    "definition_id",
    "definition_version",
    "definition_revision",
    "workflow_instance_id",
    "timeout_ms",
    "status",
    "type",
    "priority",
    "input",
    "output",
    "error",
    "attempts",
    "start_time",
    "end_time",
    "execution_environment",
    "cancel_reason",
    "next_attempt_at",
    "lease_deadline",
    "created_at",
    "updated_at",
    "version",
)
_MUTABLE = COLUMNS[6:]  # status onwards; the submission's fields never change
_HANDLED = (
    Task.Submitted,
    Task.Started,
    Task.Completed,
    Task.Failed,
    Task.Cancelled,
    Task.RetryScheduled,
    Task.TimedOut,
)


def timestamp_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order.

    ``isoformat`` is several times faster than ``strftime``, and this runs once or twice
    per projected event."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def json_text(value: Any) -> str:
    return _json.encode(value).decode()


class TaskProjection:
    """``task_view_g<N>`` and ``task_counts_g<N>``."""

    name = "tasks"

    def tables(self, generation: int) -> list[str]:
        return [f"task_view_g{generation}", f"task_counts_g{generation}"]

    def ddl(self, generation: int) -> list[str]:
        view, counts = self.tables(generation)
        g = generation
        return [
            f"""CREATE TABLE IF NOT EXISTS {view} (
                id TEXT PRIMARY KEY,
                definition_id TEXT NOT NULL,
                definition_version TEXT NOT NULL,
                definition_revision INTEGER NOT NULL,
                workflow_instance_id TEXT,
                timeout_ms BIGINT NOT NULL,
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
                next_attempt_at TEXT,
                lease_deadline TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                version INTEGER NOT NULL
            )""",
            # One index per way of listing; each ends in the sort key (created_at, id).
            f"CREATE INDEX IF NOT EXISTS ix_task_created_g{g} ON {view} (created_at, id)",
            f"CREATE INDEX IF NOT EXISTS ix_task_status_g{g} ON {view} (status, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS ix_task_type_g{g} ON {view} (type, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS ix_task_workflow_g{g} "
            f"ON {view} (workflow_instance_id, created_at, id)",
            # Running attempts by deadline: finds attempts whose worker vanished.
            f"CREATE INDEX IF NOT EXISTS ix_task_lease_g{g} ON {view} (lease_deadline) "
            "WHERE lease_deadline IS NOT NULL",
            f"""CREATE TABLE IF NOT EXISTS {counts} (
                status TEXT NOT NULL,
                type TEXT NOT NULL,
                n BIGINT NOT NULL,
                PRIMARY KEY (status, type)
            )""",
        ]

    def apply(self, cur: Cursor, events: list[tuple[int, Any]], generation: int) -> None:
        view, counts = self.tables(generation)
        relevant = [(p, str(e.originator_id), e) for p, e in events if isinstance(e, _HANDLED)]
        if not relevant:
            return
        touched = {task_id for _, task_id, _ in relevant}
        # Tasks submitted in this very batch are new: only the others need reading.
        # (A duplicate Submitted still fails: the INSERT hits the primary key.)
        new = {task_id for _, task_id, e in relevant if isinstance(e, Task.Submitted)}
        rows = _load(cur, view, touched - new)
        before = {task_id: (row["status"], row["type"]) for task_id, row in rows.items()}
        created: set[str] = set()
        for position, task_id, event in relevant:
            try:
                _apply(rows, created, task_id, event)
            except Exception as exc:
                raise ApplyError(position, exc) from exc
        try:
            _insert(cur, view, [rows[i] for i in touched if i in created])
            _update(cur, view, [rows[i] for i in touched if i not in created])
        except Exception as exc:  # e.g. a task submitted twice: name where the batch began
            raise ApplyError(relevant[0][0], exc) from exc
        delta: Counter[tuple[str, str]] = Counter()
        for task_id in touched:
            if task_id in before:
                delta[before[task_id]] -= 1
            delta[(rows[task_id]["status"], rows[task_id]["type"])] += 1
        changes = [(status, type_, n) for (status, type_), n in delta.items() if n]
        if changes:
            cur.executemany(
                f"INSERT INTO {counts} (status, type, n) VALUES (?, ?, ?) "
                f"ON CONFLICT (status, type) DO UPDATE SET n = {counts}.n + excluded.n",
                changes,
            )


# PostgreSQL: one statement per batch with one array per column (unnest) instead of a
# statement per row (pipelined executemany spent most of catch-up in the driver).
_PG_TYPES = {
    "definition_revision": "int",
    "attempts": "int",
    "version": "int",
    "timeout_ms": "bigint",
}


def _arrays(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[list[Any]]:
    return [[row[c] for row in rows] for c in columns]


def _unnest(columns: tuple[str, ...]) -> str:
    casts = ", ".join(f"?::{_PG_TYPES.get(c, 'text')}[]" for c in columns)
    return f"unnest({casts}) AS v({', '.join(columns)})"


def _insert(cur: Cursor, view: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = ", ".join(COLUMNS)
    if cur.postgres:
        cur.execute(
            f"INSERT INTO {view} ({names}) SELECT {names} FROM {_unnest(COLUMNS)}",
            _arrays(rows, COLUMNS),
            binary=True,
        )
        return
    marks = ", ".join("?" for _ in COLUMNS)
    cur.executemany(
        f"INSERT INTO {view} ({names}) VALUES ({marks})",
        [tuple(row[c] for c in COLUMNS) for row in rows],
    )


def _update(cur: Cursor, view: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if cur.postgres:
        columns = ("id", *_MUTABLE)
        assignments = ", ".join(f"{c} = v.{c}" for c in _MUTABLE)
        cur.execute(
            f"UPDATE {view} AS t SET {assignments} FROM {_unnest(columns)} WHERE t.id = v.id",
            _arrays(rows, columns),
            binary=True,
        )
        return
    assignments = ", ".join(f"{c} = ?" for c in _MUTABLE)
    cur.executemany(
        f"UPDATE {view} SET {assignments} WHERE id = ?",
        [(*(row[c] for c in _MUTABLE), row["id"]) for row in rows],
    )


def _load(cur: Cursor, view: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    if cur.postgres:
        found = cur.execute(
            f"SELECT * FROM {view} WHERE id = ANY(?)", (list(ids),), binary=True
        ).fetchall()
        return {row["id"]: row for row in found}
    rows: dict[str, dict[str, Any]] = {}
    pending = sorted(ids)
    for start in range(0, len(pending), 500):
        chunk = pending[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in cur.execute(f"SELECT * FROM {view} WHERE id IN ({marks})", chunk).fetchall():
            rows[row["id"]] = row
    return rows


def _apply(rows: dict[str, dict[str, Any]], created: set[str], task_id: str, e: Any) -> None:
    at = timestamp_text(e.timestamp)
    if isinstance(e, Task.Submitted):
        if task_id in rows:
            raise ValueError(f"task {task_id} is already in the read model")
        rows[task_id] = {
            "id": task_id,
            "definition_id": e.definition_id,
            "definition_version": e.definition_version,
            "definition_revision": e.definition_revision,
            "workflow_instance_id": e.workflow_instance_id,
            "timeout_ms": e.timeout_ms,
            "status": "PENDING",
            "type": e.task_type,
            "priority": e.priority,
            "input": json_text(e.input),
            "output": None,
            "error": None,
            "attempts": 0,
            "start_time": None,
            "end_time": None,
            "execution_environment": None,
            "cancel_reason": None,
            "next_attempt_at": None,
            "lease_deadline": None,
            "created_at": at,
            "updated_at": at,
            "version": e.originator_version,
        }
        created.add(task_id)
        return
    row = rows.get(task_id)
    if row is None:
        raise LookupError(f"task {task_id} is missing from the read model")
    if isinstance(e, Task.Started):
        deadline = e.timestamp + timedelta(milliseconds=int(row["timeout_ms"]))
        row.update(
            status="RUNNING",
            attempts=e.attempt,
            start_time=at,
            end_time=None,
            execution_environment=e.worker,
            next_attempt_at=None,
            lease_deadline=timestamp_text(deadline),
        )
    else:
        row.update(lease_deadline=None, next_attempt_at=None)
    if isinstance(e, Task.Completed):
        row.update(status="COMPLETED", output=json_text(e.output), end_time=at)
    elif isinstance(e, Task.Failed):
        error = {"type": e.error_type, "message": e.error_message}
        row.update(status="FAILED", error=json_text(error), end_time=at)
    elif isinstance(e, Task.RetryScheduled):
        error = {"type": e.error_type, "message": e.error_message}
        retry_at = datetime.fromisoformat(e.retry_at)
        row.update(
            status="PENDING",
            error=json_text(error),
            end_time=at,
            next_attempt_at=timestamp_text(retry_at),
        )
    elif isinstance(e, Task.TimedOut):
        error = {"type": "TIMEOUT", "message": e.error_message}
        row.update(status="TIMED_OUT", error=json_text(error), end_time=at)
    elif isinstance(e, Task.Cancelled):
        row.update(status="CANCELLED", cancel_reason=e.reason, end_time=at)
    row.update(updated_at=at, version=e.originator_version)
