"""Reading and writing task rows in batches, in each database's cheapest way (the
statements: projections/sql/task_writes.py).

- PostgreSQL: new rows by ``COPY`` in the binary format; changed rows by one UPDATE per
  batch with one array per column (``unnest``), also binary, instead of a statement per
  row (pipelined ``executemany`` spent most of catch-up in the driver). A small batch (the
  live one, pipelined: no COPY there) sends its rows as one JSON document instead
  (``json_populate_recordset`` over the table's own row type): psycopg dumps arrays in
  Python, element by element; msgspec encodes the rows in C.
- SQLite: ``executemany`` per shape of row. Python 3.11's sqlite3 looks up adapters for
  every ``None`` it binds (two failed attribute look-ups and an exception message). So
  rows are grouped by which columns are NULL, and those are written as ``NULL`` literals;
  only values are bound.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any

import msgspec

from projections.db import Cursor
from projections.sql import task_writes
from projections.task_rows import COLUMNS, ID, MUTABLE, NULLABLE, Row, Rows

_FIRST_MUTABLE = COLUMNS.index(MUTABLE[0])
_END_MUTABLE = COLUMNS.index(MUTABLE[-1]) + 1
_ALL = tuple(range(len(COLUMNS)))
_SET_THEN_ID = (*range(_FIRST_MUTABLE, _END_MUTABLE), ID)  # an UPDATE's parameters
_NULLABLE = frozenset(COLUMNS.index(c) for c in NULLABLE)
_UPDATE_NAMES = ("id", *MUTABLE)
_updated = itemgetter(ID, *range(_FIRST_MUTABLE, _END_MUTABLE))
_encode = msgspec.json.Encoder().encode
Shape = tuple[bool, ...]  # per nullable column: is it NULL


def load(cur: Cursor, view: str, ids: set[str]) -> Rows:
    """The rows of ``ids`` that exist, by id."""
    if not ids:
        return {}
    if cur.postgres:
        found = cur.select_tuples(task_writes.select_any(view), (list(ids),), binary=True)
    else:
        found = []
        pending = sorted(ids)
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            found += cur.select_tuples(task_writes.select_in(view, len(chunk)), chunk)
    return {row[ID]: list(row) for row in found}


def insert(cur: Cursor, view: str, rows: list[Row]) -> None:
    if not rows:
        return
    if cur.postgres and not cur.copies:  # a small batch, pipelined or deferred: no COPY
        cur.execute(
            task_writes.insert_json(view),
            (_json([dict(zip(COLUMNS, row, strict=True)) for row in rows]),),
        )
        return
    if cur.postgres:
        cur.copy_rows(view, COLUMNS, task_writes.COPY_TYPES, rows)
        return
    for shape, values in _by_shape(rows, _ALL).items():
        cur.executemany(_sqlite_insert(view, shape), values)


def update(cur: Cursor, view: str, rows: list[Row]) -> None:
    """Write the mutable columns of existing rows."""
    if not rows:
        return
    if cur.postgres and not cur.copies:
        cur.execute(
            task_writes.update_json(view),
            (_json([dict(zip(_UPDATE_NAMES, _updated(row), strict=True)) for row in rows]),),
        )
        return
    if cur.postgres:
        arrays = list(zip(*rows, strict=True))
        cur.execute(
            task_writes.update_arrays(view),
            [list(arrays[ID]), *(list(c) for c in arrays[_FIRST_MUTABLE:_END_MUTABLE])],
            binary=True,
        )
        return
    for shape, values in _by_shape(rows, _SET_THEN_ID).items():
        cur.executemany(_sqlite_update(view, shape), values)


def add_counts(cur: Cursor, counts: str, changes: list[tuple[str, str, int]]) -> None:
    """Add ``n`` to the count of each (status, type): one statement on PostgreSQL."""
    if not changes:
        return
    if cur.postgres:
        rows = [{"status": status, "type": type_, "n": n} for status, type_, n in changes]
        cur.execute(task_writes.add_counts_json(counts), (_json(rows),))
        return
    cur.executemany(task_writes.add_counts(counts), changes)


def add_tenant_counts(cur: Cursor, counts: str, changes: list[tuple[str, str, str, int]]) -> None:
    """Add ``n`` to the count of each (tenant, status, type): one statement on PostgreSQL."""
    if not changes:
        return
    if cur.postgres:
        names = ("tenant", "status", "type", "n")
        rows = [dict(zip(names, change, strict=True)) for change in changes]
        cur.execute(task_writes.add_tenant_counts_json(counts), (_json(rows),))
        return
    cur.executemany(task_writes.add_tenant_counts(counts), changes)


def _json(rows: list[dict[str, Any]]) -> str:
    return _encode(rows).decode()


def _by_shape(rows: list[Row], columns: tuple[int, ...]) -> dict[Shape, list[tuple[Any, ...]]]:
    """The values of ``columns`` (indexes into each row) grouped by which nullable ones
    are None, each group without its Nones: the shape is a few ``is None`` tests, the
    values one ``itemgetter`` call (C), per row."""
    nullable = [column for column in columns if column in _NULLABLE]
    groups: dict[Shape, tuple[Callable[[Row], tuple[Any, ...]], list[tuple[Any, ...]]]] = {}
    for row in rows:
        shape = tuple([row[column] is None for column in nullable])
        group = groups.get(shape)
        if group is None:
            group = groups[shape] = (_getter(columns, shape), [])
        group[1].append(group[0](row))
    return {shape: values for shape, (_, values) in groups.items()}


@lru_cache(maxsize=256)
def _getter(columns: tuple[int, ...], shape: Shape) -> Callable[[Row], tuple[Any, ...]]:
    nulls = iter(shape)
    kept = [c for c in columns if not (c in _NULLABLE and next(nulls))]
    get = itemgetter(*kept)
    return get if len(kept) > 1 else lambda row: (get(row),)


def _nulls(columns: tuple[int, ...], shape: Shape) -> tuple[bool, ...]:
    """Per column: is it NULL (as ``shape`` says for the nullable ones)."""
    nulls = iter(shape)
    return tuple([c in _NULLABLE and next(nulls) for c in columns])


@lru_cache(maxsize=256)
def _sqlite_insert(view: str, shape: Shape) -> str:
    return task_writes.insert_values(view, _nulls(_ALL, shape))


@lru_cache(maxsize=256)
def _sqlite_update(view: str, shape: Shape) -> str:
    return task_writes.update_values(view, _nulls(_SET_THEN_ID, shape)[:-1])  # the id last
