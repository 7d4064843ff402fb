"""Queries over the read models: plain SQL (projections/sql/reads.sql) over the active
generation's tables.

Nothing here loads an aggregate. ``totalItems`` comes from the counts table (status and
type filters) or from the workflow index (a workflow's tasks), never from a scan of all
tasks; pages past the middle are read from the other end of the index, so the last page
costs what the first does.
"""

from __future__ import annotations

import builtins
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from projections.db import Cursor, Database
from projections.schema import active_generation
from projections.sql import equals, reads, where
from projections.stranded import stranded
from projections.task_filters import TaskFilters
from projections.task_rows import free_text

T = TypeVar("T")
_MISSING_TABLE = (sqlite3.OperationalError, psycopg.errors.UndefinedTable)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    page: int
    limit: int
    total_items: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_items / self.limit) if self.total_items else 0


class Generation:
    """The active read-model generation, cached for a moment (a rebuild switches it)."""

    def __init__(self, db: Database, ttl: float = 1.0) -> None:
        self._db = db
        self._ttl = ttl
        self._value = 0
        self._read_at = 0.0
        self._lock = threading.Lock()

    def current(self, cur: Cursor, refresh: bool = False) -> int:
        now = time.monotonic()
        with self._lock:
            if refresh or not self._value or now - self._read_at > self._ttl:
                self._value = active_generation(cur)
                self._read_at = now
            return self._value

    def query(self, run: Callable[[Cursor, int], T], snapshot: bool = True) -> T:
        """Run ``run(cursor, generation)`` in one snapshot; retry once after a switch.

        ``snapshot=False`` for a single statement, which sees one consistent state by
        itself: on PostgreSQL that saves the ``SET TRANSACTION … REPEATABLE READ`` round
        trip of every snapshot."""
        unit = self._db.snapshot if snapshot else self._db.read
        for attempt in (0, 1):
            with unit() as cur:
                try:
                    return run(cur, self.current(cur, refresh=attempt == 1))
                except _MISSING_TABLE:
                    if attempt:
                        raise
            # the generation was switched and the old tables dropped: read it again
        raise AssertionError("unreachable")


class TaskQueries:
    """Reads ``task_view`` and ``task_counts``."""

    def __init__(self, db: Database, generation: Generation | None = None) -> None:
        self._generation = generation or Generation(db)

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The task's row with JSON columns decoded, or None if there is none."""

        def run(cur: Cursor, g: int) -> dict[str, Any] | None:
            return cur.execute(reads.task_by_id(g), (task_id,)).fetchone()

        row = self._generation.query(run, snapshot=False)
        return decode_task(row) if row is not None else None

    def list(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        workflow_instance_id: str | None = None,
        error_type: str | None = None,
        tenant: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page:
        """Newest first (ties by id, descending); filters combine. ``error_type``: the
        type of the task's last failure (``error.type``); ``tenant``: only that tenant's
        tasks (None: all of them; projections/task_filters.py)."""
        filters = TaskFilters.of(status, task_type, workflow_instance_id, error_type, tenant)

        def run(cur: Cursor, g: int) -> Page:
            row = cur.execute(*filters.count(g)).fetchone()
            total = int(row["n"]) if row else 0
            offset = (page - 1) * limit
            if offset >= total:
                return Page([], page, limit, total)
            size = min(limit, total - offset)
            rows_where, rows_params, newest_first = filters.page(cur)
            if offset <= total // 2:
                rows = cur.execute(
                    reads.task_page(g, rows_where, newest_first), [*rows_params, size, offset]
                ).fetchall()
            else:  # nearer the end: count from the oldest, then turn the page around
                oldest_first = reads.oldest_first(newest_first)
                rows = cur.execute(
                    reads.task_page(g, rows_where, oldest_first),
                    [*rows_params, size, total - offset - size],
                ).fetchall()
                rows.reverse()
            return Page(rows, page, limit, total)

        return self._generation.query(run)

    def expired_leases(self, before: str, limit: int = 100) -> builtins.list[tuple[str, int]]:
        """Running attempts whose deadline (start + timeout) is earlier than ``before``
        (fixed-width UTC text): (task id, attempt)."""

        def run(cur: Cursor, g: int) -> builtins.list[tuple[str, int]]:
            rows = cur.execute(reads.expired_leases(g), (before, limit)).fetchall()
            return [(row["id"], int(row["attempts"])) for row in rows]

        return self._generation.query(run)

    def status_counts(self) -> dict[str, int]:
        """Tasks per status, from the counts table (a handful of rows, whatever the
        number of tasks): for the metrics' ``taskexec_tasks`` gauge."""

        def run(cur: Cursor, g: int) -> dict[str, int]:
            counts: dict[str, int] = {}
            for row in cur.execute(reads.task_counts(g)).fetchall():
                counts[row["status"]] = counts.get(row["status"], 0) + int(row["n"])
            return counts

        return self._generation.query(run, snapshot=False)

    def stranded(self, before: str, limit: int = 100) -> builtins.list[tuple[str, str]]:
        """PENDING tasks (not MANUAL) due and unchanged since before ``before``
        (fixed-width UTC text), oldest first: (task id, priority)."""

        def run(cur: Cursor, g: int) -> builtins.list[tuple[str, str]]:
            return [(row[0], row[2]) for row in stranded(cur, g, before, limit)]

        return self._generation.query(run)


class DefinitionQueries:
    """Reads ``definition_view``."""

    def __init__(self, db: Database, generation: Generation | None = None) -> None:
        self._generation = generation or Generation(db)

    def get(self, definition_id: str) -> dict[str, Any] | None:
        def run(cur: Cursor, g: int) -> dict[str, Any] | None:
            key = free_text(definition_id)  # PostgreSQL cannot even compare with a NUL
            return cur.execute(reads.definition_by_id(g), (key,)).fetchone()

        row = self._generation.query(run, snapshot=False)
        if row is not None:
            row["document"] = json.loads(row["document"])
        return row

    def list(
        self,
        *,
        task_type: str | None = None,
        search: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page:
        """By id; ``search`` matches name or description, case-insensitively."""
        conditions: list[str] = []
        params: list[Any] = []
        if task_type is not None:
            conditions.append(equals("type"))
            params.append(task_type)
        if search:
            pattern = "%" + _escape_like(str(free_text(search)).lower()) + "%"
            conditions.append(reads.definition_matches())
            params += [pattern, pattern]
        clause = where(conditions)

        def run(cur: Cursor, g: int) -> Page:
            row = cur.execute(reads.count_definitions(g, clause), params).fetchone()
            total = int(row["n"]) if row else 0
            offset = (page - 1) * limit
            if offset >= total:  # past the end (a page number SQLite cannot even bind)
                return Page([], page, limit, total)
            rows = cur.execute(reads.definition_page(g, clause), [*params, limit, offset])
            return Page(rows.fetchall(), page, limit, total)

        return self._generation.query(run)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def decode_task(row: dict[str, Any]) -> dict[str, Any]:
    for column in ("input", "output", "error"):
        if row[column] is not None:
            row[column] = json.loads(row[column])
    row["duration_ms"] = duration_ms(row["start_time"], row["end_time"])
    return row


def duration_ms(start: str | None, end: str | None) -> int | None:
    if start is None or end is None:
        return None
    delta = _parse(end) - _parse(start)
    return round(delta.total_seconds() * 1000)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
