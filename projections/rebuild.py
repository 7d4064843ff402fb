"""Rebuild every read model from the event store, beside the live one, then switch.

1. Create the next generation's tables and fill them from position 0 in large batches
   (nobody else writes them, so no lock is needed), reporting progress; then create
   their secondary indexes (cheaper in one go than row by row) and ANALYZE them.
2. Catch up to the head, then, holding the read-model write lock (the same one every
   runner batch takes), apply the last events and switch the active generation: one
   transaction, so readers see either the old complete tables or the new complete ones.
3. After a grace period (readers cache the generation for a second), drop the old tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from commands.gc_pause import gc_paused
from projections.db import Cursor, Database
from projections.prefetch import CATCH_UP_BATCH, Prefetcher
from projections.runner import write_lock
from projections.runner_types import ReadLog
from projections.schema import (
    Projection,
    active_generation,
    create_generation,
    create_indexes,
    drop_generation,
    ensure_meta,
    set_active_generation,
    write_position,
)
from projections.sql import statement

Progress = Callable[[int, int], None]  # (events done, events in the store)


SQLITE_ANALYSIS_LIMIT = 400  # rows per index that ANALYZE reads on SQLite


@dataclass(frozen=True)
class RebuildResult:
    old_generation: int
    new_generation: int
    events: int
    position: int
    seconds: float  # from the start until the new generation is live (the switch)
    cleanup_seconds: float = 0.0  # then: the grace period and dropping the old tables


class Rebuilder:
    """Builds generation N+1 of the read models and switches to it."""

    def __init__(
        self,
        read_log: ReadLog,
        head: Callable[[], int],
        projections: list[Projection],
        db: Database,
        batch_size: int = CATCH_UP_BATCH,
    ) -> None:
        self._read_log = read_log
        self._head = head
        self._projections = projections
        self._db = db
        self._batch_size = batch_size
        self._prefetch = Prefetcher(
            read_log, batch_size, threaded=db.postgres, catch_up_size=batch_size
        )

    def rebuild(
        self, progress: Progress = lambda done, total: None, drop_after: float = 3.0
    ) -> RebuildResult:
        started = time.monotonic()
        with self._db.transaction() as cur:
            self._lock(cur)
            ensure_meta(cur)
            old = active_generation(cur)
        new = max(old, self._highest_generation()) + 1
        with self._db.transaction() as cur:
            drop_generation(cur, self._projections, new)  # leftovers of an interrupted rebuild
            create_generation(cur, self._projections, new, indexes=False)

        position, done = 0, 0
        total = self._head()
        try:
            while True:  # fill aside, without the lock
                applied = self._batch(new, position)
                if applied is None:
                    break
                position, count = applied
                done += count
                total = max(total, position)
                progress(done, total)
        finally:
            self._prefetch.close()

        with self._db.transaction() as cur:  # indexes now; fresh statistics for the planner
            create_indexes(cur, self._projections, new)
            if not self._db.postgres:
                # Statistics from a sample of each index (as SQLite's PRAGMA optimize
                # advises), not a full scan of each.
                cur.execute(statement("sqlite_analysis_limit").format(rows=SQLITE_ANALYSIS_LIMIT))
            for projection in self._projections:
                for table in projection.tables(new):
                    cur.execute(statement("analyze").format(table=table))

        with self._db.transaction() as cur:  # catch up and switch, under the lock
            self._lock(cur)
            filled = position
            while events := self._read_log(position, self._batch_size):
                for projection in self._projections:
                    projection.apply(cur, events, new)
                position = events[-1][0]
                done += len(events)
            if position != filled:
                write_position(cur, new, position)
            set_active_generation(cur, new)
        progress(done, max(done, position))
        switched = time.monotonic()

        time.sleep(drop_after)
        with self._db.transaction() as cur:
            self._lock(cur)
            drop_generation(cur, self._projections, old)
        cleanup = time.monotonic() - switched
        return RebuildResult(old, new, done, position, switched - started, cleanup)

    def _batch(self, generation: int, position: int) -> tuple[int, int] | None:
        with gc_paused():  # the batch's objects die together (commands/gc_pause.py)
            return self._apply_batch(generation, position)

    def _apply_batch(self, generation: int, position: int) -> tuple[int, int] | None:
        events = self._prefetch.read(position)
        if not events:
            return None
        with self._db.transaction() as cur:
            for projection in self._projections:
                projection.apply(cur, events, generation)
            write_position(cur, generation, events[-1][0])
        return events[-1][0], len(events)

    def _lock(self, cur: Cursor) -> None:
        if self._db.postgres:
            cur.execute(statement("pg_write_lock"), (write_lock(self._db.config),))

    def _highest_generation(self) -> int:
        """Past generations may have positions left behind; never reuse their number."""
        with self._db.read() as cur:
            rows = cur.execute(statement("position_names")).fetchall()
        numbers = [int(r["name"].rsplit("_g", 1)[1]) for r in rows if "_g" in r["name"]]
        return max(numbers, default=0)
