"""Reading and writing task rows in batches, in each database's cheapest way.

- PostgreSQL: new rows by ``COPY`` in the binary format; changed rows by one UPDATE per
  batch with one array per column (``unnest``), also binary, instead of a statement per
  row (pipelined ``executemany`` spent most of catch-up in the driver).
- SQLite: ``executemany`` per shape of row. Python 3.11's sqlite3 looks up adapters for
  every ``None`` it binds (two failed attribute look-ups, each formatting an exception
  message: a third of the cost of writing a row, callgrind). So rows are grouped by which
  columns are NULL, and those are written as ``NULL`` literals; only values are bound.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import compress
from operator import is_, is_not
from typing import Any

from projections.db import Cursor
from projections.task_rows import COLUMNS, ID, MUTABLE, Row, Rows

_PG_TYPES = {  # of the columns that are not text
    "definition_revision": "int4",
    "attempts": "int4",
    "version": "int4",
    "timeout_ms": "int8",
}
_COPY_TYPES = [_PG_TYPES.get(c, "text") for c in COLUMNS]
_FIRST_MUTABLE = COLUMNS.index(MUTABLE[0])
_NONES = (None,) * len(COLUMNS)
_NAMES = ", ".join(COLUMNS)
Shape = tuple[bool, ...]  # per column: is it NULL


def load(cur: Cursor, view: str, ids: set[str]) -> Rows:
    """The rows of ``ids`` that exist, by id."""
    if not ids:
        return {}
    if cur.postgres:
        found = cur.execute(
            f"SELECT {_NAMES} FROM {view} WHERE id = ANY(?)", (list(ids),), binary=True
        ).fetchall()
    else:
        found = []
        pending = sorted(ids)
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            found += cur.execute(
                f"SELECT {_NAMES} FROM {view} WHERE id IN ({marks})", chunk
            ).fetchall()
    return {row["id"]: [row[c] for c in COLUMNS] for row in found}


def insert(cur: Cursor, view: str, rows: list[Row]) -> None:
    if not rows:
        return
    if cur.postgres:
        cur.copy_rows(view, COLUMNS, _COPY_TYPES, rows)
        return
    for shape, values in _by_shape(rows).items():
        cur.executemany(_sqlite_insert(view, shape), values)


def update(cur: Cursor, view: str, rows: list[Row]) -> None:
    """Write the mutable columns of existing rows."""
    if not rows:
        return
    if cur.postgres:
        columns = ("id", *MUTABLE)
        assignments = ", ".join(f"{c} = v.{c}" for c in MUTABLE)
        arrays = list(zip(*rows, strict=True))
        cur.execute(
            f"UPDATE {view} AS t SET {assignments} FROM {_unnest(columns)} WHERE t.id = v.id",
            [list(arrays[ID]), *(list(column) for column in arrays[_FIRST_MUTABLE:])],
            binary=True,
        )
        return
    mutable = [[*row[_FIRST_MUTABLE:], row[ID]] for row in rows]
    for shape, values in _by_shape(mutable).items():
        cur.executemany(_sqlite_update(view, shape), values)


def _unnest(columns: tuple[str, ...]) -> str:
    casts = ", ".join(f"?::{_PG_TYPES.get(c, 'text')}[]" for c in columns)
    return f"unnest({casts}) AS v({', '.join(columns)})"


def _by_shape(rows: list[list[Any]]) -> dict[Shape, list[list[Any]]]:
    """Rows grouped by which values are None, each without its Nones (C-level loops:
    ``map``/``compress`` over ``operator.is_``)."""
    groups: dict[Shape, list[list[Any]]] = {}
    for row in rows:
        shape = tuple(map(is_, row, _NONES))
        values = list(compress(row, map(is_not, row, _NONES)))
        group = groups.get(shape)
        if group is None:
            groups[shape] = [values]
        else:
            group.append(values)
    return groups


@lru_cache(maxsize=256)
def _sqlite_insert(view: str, shape: Shape) -> str:
    values = ", ".join("NULL" if null else "?" for null in shape)
    return f"INSERT INTO {view} ({_NAMES}) VALUES ({values})"


@lru_cache(maxsize=256)
def _sqlite_update(view: str, shape: Shape) -> str:
    """``shape`` covers the mutable columns, then the id (never NULL)."""
    assignments = ", ".join(
        f"{column} = {'NULL' if null else '?'}"
        for column, null in zip(MUTABLE, shape, strict=False)
    )
    return f"UPDATE {view} SET {assignments} WHERE id = ?"
