"""Read-model generations: the tables a projection writes are ``<name>_g<generation>``.

The active generation is one row; a rebuild fills the next generation beside the live
one and then switches the row, so queries keep answering from complete tables at every
moment. The position of each generation is a row of ``projection_position``.
"""

from __future__ import annotations

from typing import Any, Protocol

import psycopg

from projections.db import Cursor
from projections.sql import is_index, statement

META_DDL = [statement("create_generation_table"), statement("create_position_table")]
_ACTIVE_GENERATION = statement("active_generation")
_READ_POSITION = statement("read_position")
_GENERATION_AND_POSITION = statement("generation_and_position")
_EXPECT_GENERATION_AND_POSITION = statement("expect_generation_and_position")
_WRITE_POSITION = statement("write_position")


class Projection(Protocol):
    """A read model: its tables per generation and how a batch of events changes them."""

    name: str

    def ddl(self, generation: int) -> list[str]:
        """``CREATE … IF NOT EXISTS`` statements: tables (with their keys), then indexes.
        The queries of a batch's ``apply`` may only need the tables' keys: a rebuild
        creates the other indexes when the tables are full (``create_indexes``)."""

    def tables(self, generation: int) -> list[str]: ...

    def upgrade(self, cur: Cursor, generation: int) -> None:
        """Bring tables an older version made to this one's shape (columns added since,
        filled from what the rows hold): ``CREATE … IF NOT EXISTS`` leaves them as they
        are, and a rebuild is not needed for a new column."""

    def apply(self, cur: Cursor, events: list[tuple[int, Any]], generation: int) -> None:
        """Apply a batch in order; raise ApplyError naming the position that failed."""

    def remember(self) -> None:
        """The last batch applied is committed (a projection may keep what it wrote)."""

    def forget(self) -> None:
        """What was kept may be stale now: another writer, a rollback, a new generation."""


class ApplyError(Exception):
    """An event could not be applied to a read model."""

    def __init__(self, position: int, cause: BaseException) -> None:
        super().__init__(f"notification {position}: {cause!r}")
        self.position = position
        self.cause = cause


def ensure_meta(cur: Cursor) -> None:
    for ddl in META_DDL:
        cur.execute(ddl)
    cur.execute(statement("first_generation"))


def active_generation(cur: Cursor) -> int:
    row = cur.execute(_ACTIVE_GENERATION).fetchone()
    return int(row["generation"]) if row else 1


def set_active_generation(cur: Cursor, generation: int) -> None:
    cur.execute(statement("set_active_generation"), (generation,))


def position_name(generation: int) -> str:
    return f"read_model_g{generation}"


def read_position(cur: Cursor, generation: int) -> int:
    row = cur.execute(_READ_POSITION, (position_name(generation),)).fetchone()
    return int(row["position"]) if row else 0


def generation_and_position(cur: Cursor) -> tuple[int, int]:
    """The active generation and its position, in one query (one round trip)."""
    row = cur.execute(_GENERATION_AND_POSITION).fetchone()
    if row is None:
        return 1, 0
    return int(row["generation"]), int(row["position"] or 0)


def expect_generation_and_position(cur: Cursor, generation: int, position: int) -> None:
    """Fail the transaction unless ``generation`` is the active one and at ``position``:
    the check of a pipelined batch without waiting mid-transaction for an answer. The
    statement divides by the number of rows that match, so a mismatch is a division by
    zero (``moved``), raised at the transaction's next sync, and every statement after
    it is skipped. (A count in a sub-SELECT is computed when the statement runs; a
    constant ``1/0`` could be folded while planning, whatever the condition says.)"""
    cur.execute(_EXPECT_GENERATION_AND_POSITION, (generation, position))


def moved(exc: BaseException) -> bool:
    """Did a check at commit fail the transaction: ``expect_generation_and_position``, or
    a projection's own check in a deferred batch (directly, or as the cause of an
    ApplyError: the error shows at whichever statement synced first)?"""
    cause = exc.cause if isinstance(exc, ApplyError) else exc
    return isinstance(cause, psycopg.errors.DivisionByZero)


def write_position(cur: Cursor, generation: int, position: int, check: bool = True) -> None:
    """``check``: make sure the position moved forward (a round trip in a pipelined
    batch; a batch checked by ``expect_generation_and_position`` needs none)."""
    cur.execute(_WRITE_POSITION, (position_name(generation), position))
    if check and cur.rowcount != 1:
        raise RuntimeError(f"position {position} of generation {generation} was already recorded")


def create_generation(
    cur: Cursor, projections: list[Projection], generation: int, indexes: bool = True
) -> None:
    """The tables of ``generation`` (if missing; brought up to date if older: ``upgrade``)
    and, unless ``indexes`` is False, their secondary indexes (``CREATE INDEX`` statements
    of ``ddl``; see ``create_indexes``)."""
    for projection in projections:
        for ddl in projection.ddl(generation):
            if not is_index(ddl):
                cur.execute(ddl)
        projection.upgrade(cur, generation)
        if indexes:
            create_indexes(cur, [projection], generation)


def create_indexes(cur: Cursor, projections: list[Projection], generation: int) -> None:
    """The secondary indexes of ``generation``. A rebuild fills its tables first and
    indexes them afterwards: building an index from the complete table (one sort) costs
    much less than keeping it up to date row by row."""
    for projection in projections:
        for ddl in projection.ddl(generation):
            if is_index(ddl):
                cur.execute(ddl)


def drop_generation(cur: Cursor, projections: list[Projection], generation: int) -> None:
    for projection in projections:
        for table in projection.tables(generation):
            cur.execute(statement("drop_table").format(table=table))
    cur.execute(statement("delete_position"), (position_name(generation),))
