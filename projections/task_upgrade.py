"""Columns the task read model gained after its first tables were made, added to an
existing generation in place: ``CREATE TABLE IF NOT EXISTS`` leaves an older table as it
is, and waiting for ``taskexec projections rebuild`` would leave the new column empty.

Runs where the runner creates a generation's tables (``serve``'s start, under the
read-model write lock every batch takes, and after a rebuild's switch): a table that has
the column already costs one catalog query.

- ``error_type`` (the type of ``error``, for ``GET /api/v1/tasks?errorType=``): added and
  filled from each row's ``error`` (the JSON text of the last failure), in id order,
  a page at a time. In Python, not SQL: PostgreSQL's JSON operators refuse a ``\\u0000``
  in a message, which the ``error`` text may hold, and the value is kept as the
  projection keeps free text (a NUL as U+FFFD).
- ``scheduled_at`` (a scheduled task's time): added empty; the tasks recorded before it
  existed were not scheduled.
- ``tenant`` (the submitter's tenant, docs/security.md): added empty; the tasks recorded
  before it existed have none. Its indexes (only rows with a tenant) and the per-tenant
  counts table are made as any missing one is, by ``CREATE … IF NOT EXISTS``.
"""

from __future__ import annotations

import json
import logging

from projections.db import Cursor
from projections.sql import statement
from projections.task_rows import free_text

log = logging.getLogger(__name__)

PAGE = 5_000  # rows read and updated at a time while filling a new column


def columns(cur: Cursor, table: str) -> set[str]:
    """The names of ``table``'s columns."""
    name = "pg_task_view_columns" if cur.postgres else "sqlite_task_view_columns"
    return {row["name"] for row in cur.execute(statement(name), (table,)).fetchall()}


def add_missing_columns(cur: Cursor, view: str) -> None:
    """Add (and fill) every column the task view ``view`` lacks."""
    present = columns(cur, view)
    if "error_type" not in present:
        cur.execute(statement("add_task_error_type").format(view=view))
        filled = fill_error_types(cur, view)
        log.info("read model %s: column error_type added, %d rows filled", view, filled)
    if "scheduled_at" not in present:
        cur.execute(statement("add_task_scheduled_at").format(view=view))
        log.info("read model %s: column scheduled_at added", view)
    if "tenant" not in present:
        cur.execute(statement("add_task_tenant").format(view=view))
        log.info("read model %s: column tenant added", view)


def fill_error_types(cur: Cursor, view: str) -> int:
    """Set ``error_type`` from ``error`` on every row with an error; how many."""
    select = statement("task_errors_after").format(view=view)
    update = statement("set_task_error_type").format(view=view)
    after, filled = "", 0
    while True:
        rows = cur.execute(select, (after, PAGE)).fetchall()
        if not rows:
            return filled
        cur.executemany(update, [(error_type(row["error"]), row["id"]) for row in rows])
        filled += len(rows)
        after = rows[-1]["id"]


def error_type(error: str) -> str | None:
    """The type in a row's ``error`` text, as the projection writes it (free text)."""
    found = json.loads(error).get("type")
    return free_text(found) if isinstance(found, str) else None
