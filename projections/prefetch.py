"""Read the next batch of the notification log while the current one is being applied,
in batches that grow while the reader is behind.

Batch size: a runner that is caught up reads small batches (its waiters see each one
soon); once a batch comes back full, it is behind, and reads ``catch_up_size`` until a
batch comes back short. Larger batches cost less per event: more of each task's events
fall in one batch, so its row is written once, as an INSERT of the final row, rather
than INSERTed and UPDATEd (docs/benchmarks.md, "Design measurements").

On PostgreSQL, catching up and rebuilding alternate between reading (event store) and
writing (read models), and each waits on the server for part of the time: reading (and
decoding) the next batch in a second thread while this one is written raises throughput.
Only a full batch schedules a read-ahead (we are behind).

On SQLite there is no server to wait for: both sides are work in this process, under one
GIL, and a second thread only adds hand-overs of the GIL (SQLite gives it up at every
row it steps through). There ``threaded=False`` reads each batch when it is asked for.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from projections.runner_types import ReadLog

CATCH_UP_BATCH = 20_000  # events per batch while behind

Events = list[tuple[int, Any]]


class Prefetcher:
    """``read(after)`` returns what ``read_log(after, size)`` would, often at once;
    ``full`` tells whether it returned all it asked for (so more may be waiting)."""

    def __init__(
        self,
        read_log: ReadLog,
        batch_size: int,
        threaded: bool = True,
        catch_up_size: int = CATCH_UP_BATCH,
    ) -> None:
        self._read_log = read_log
        self._batch_size = batch_size
        self._catch_up_size = max(batch_size, catch_up_size)
        self._size = batch_size
        self._threaded = threaded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._ahead: tuple[int, int, Future[Events]] | None = None
        self.full = False

    def read(self, after: int) -> Events:
        events: Events | None = None
        size = self._size
        if self._ahead is not None:
            position, size, future = self._ahead
            self._ahead = None
            if position == after:
                events = future.result()
            else:
                future.cancel()
                size = self._size
        if events is None:
            events = self._read_log(after, size)
        self.full = len(events) >= size
        self._size = self._catch_up_size if self.full else self._batch_size
        if self._threaded and self.full:
            last = events[-1][0]
            ahead = self._pool.submit(self._read_log, last, self._size)
            self._ahead = (last, self._size, ahead)
        return events

    def close(self) -> None:
        self._ahead = None
        self._pool.shutdown(wait=False, cancel_futures=True)
