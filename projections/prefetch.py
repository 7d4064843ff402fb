"""Read the next batch of the notification log while the current one is being applied.

On PostgreSQL, catching up and rebuilding alternate between reading (event store) and
writing (read models), and each waits on the server for part of the time: reading (and
decoding) the next batch in a second thread while this one is written raises throughput.
Only a full batch schedules a read-ahead (we are behind).

On SQLite there is no server to wait for: both sides are work in this process, under one
GIL, and a second thread only added hand-overs of the GIL (SQLite gives it up at every
row it steps through): measured side by side, the same catch-up took 20-30% more CPU and
was no faster. There ``threaded=False`` reads each batch when it is asked for.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from projections.runner_types import ReadLog


class Prefetcher:
    """``read(after)`` returns what ``read_log(after, batch_size)`` would, often at once."""

    def __init__(self, read_log: ReadLog, batch_size: int, threaded: bool = True) -> None:
        self._read_log = read_log
        self._batch_size = batch_size
        self._threaded = threaded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._ahead: tuple[int, Future[list[tuple[int, Any]]]] | None = None

    def read(self, after: int) -> list[tuple[int, Any]]:
        events: list[tuple[int, Any]] | None = None
        if self._ahead is not None:
            position, future = self._ahead
            self._ahead = None
            if position == after:
                events = future.result()
            else:
                future.cancel()
        if events is None:
            events = self._read_log(after, self._batch_size)
        if self._threaded and len(events) == self._batch_size:
            last = events[-1][0]
            self._ahead = (last, self._pool.submit(self._read_log, last, self._batch_size))
        return events

    def close(self) -> None:
        self._ahead = None
        self._pool.shutdown(wait=False, cancel_futures=True)
