"""The task read model's batch statements (projections/task_sql.py): the templates of
task_writes.sql with the table's columns filled in, once per table."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from projections.sql import marks, statement
from projections.task_rows import COLUMNS, MUTABLE

PG_TYPES = {  # of the columns that are not text
    "definition_revision": "int4",
    "attempts": "int4",
    "version": "int4",
    "timeout_ms": "int8",
}
COPY_TYPES = [PG_TYPES.get(c, "text") for c in COLUMNS]
_NAMES = ", ".join(COLUMNS)
_FROM_V = ", ".join(f"{c} = v.{c}" for c in MUTABLE)  # SET from the rows AS v


def json_rows(table: str) -> str:
    """Rows of ``table``'s type from a JSON array of objects keyed by column (``?``)."""
    return statement("json_rows").format(table=table)


def _array_rows(columns: Sequence[str]) -> str:
    arrays = ", ".join(f"?::{PG_TYPES.get(c, 'text')}[]" for c in columns)
    return statement("array_rows").format(arrays=arrays, columns=", ".join(columns))


@lru_cache(maxsize=64)
def select_any(view: str) -> str:
    """PostgreSQL: the rows whose id is in one array parameter."""
    return statement("select_task_rows_any").format(columns=_NAMES, view=view)


def select_in(view: str, count: int) -> str:
    """The rows whose id is one of ``count`` parameters."""
    template = statement("select_task_rows_in")
    return template.format(columns=_NAMES, view=view, marks=marks(count))


@lru_cache(maxsize=64)
def insert_json(view: str) -> str:
    """PostgreSQL: insert the rows of one JSON parameter (``json_rows``)."""
    template = statement("insert_task_rows_from")
    return template.format(view=view, columns=_NAMES, rows=json_rows(view))


@lru_cache(maxsize=64)
def update_json(view: str) -> str:
    """PostgreSQL: write the mutable columns of the rows of one JSON parameter."""
    template = statement("update_task_rows_from")
    return template.format(view=view, assignments=_FROM_V, rows=json_rows(view))


@lru_cache(maxsize=64)
def update_arrays(view: str) -> str:
    """PostgreSQL: write the mutable columns from one array per column, id first."""
    rows = _array_rows(("id", *MUTABLE))
    return statement("update_task_rows_from").format(view=view, assignments=_FROM_V, rows=rows)


@lru_cache(maxsize=64)
def add_counts_json(counts: str) -> str:
    """PostgreSQL: add to the counts the (status, type, n) of one JSON parameter."""
    return statement("add_counts_from").format(counts=counts, rows=json_rows(counts))


@lru_cache(maxsize=64)
def add_counts(counts: str) -> str:
    return statement("add_counts").format(counts=counts)


@lru_cache(maxsize=64)
def add_tenant_counts_json(counts: str) -> str:
    """PostgreSQL: add the (tenant, status, type, n) of one JSON parameter."""
    return statement("add_tenant_counts_from").format(counts=counts, rows=json_rows(counts))


@lru_cache(maxsize=64)
def add_tenant_counts(counts: str) -> str:
    return statement("add_tenant_counts").format(counts=counts)


def _mark(null: bool) -> str:
    return "NULL" if null else "?"


def insert_values(view: str, nulls: Sequence[bool]) -> str:
    """SQLite: one row, ``NULL`` for each column ``nulls`` says, ``?`` for the others."""
    values = ", ".join(_mark(null) for null in nulls)
    return statement("insert_task_values").format(view=view, columns=_NAMES, values=values)


def update_values(view: str, nulls: Sequence[bool]) -> str:
    """SQLite: set each mutable column to ``NULL`` (as ``nulls`` says) or ``?``, by id."""
    assignments = ", ".join(
        f"{column} = {_mark(null)}" for column, null in zip(MUTABLE, nulls, strict=True)
    )
    return statement("update_task_values").format(view=view, assignments=assignments)
