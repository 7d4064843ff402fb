"""The read-ahead and the growing batches of projections/prefetch.py (pure logic: a list
stands in for the notification log)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from projections.prefetch import Prefetcher


class Log:
    def __init__(self, length: int) -> None:
        self.events = [(n, f"event {n}") for n in range(1, length + 1)]
        self.reads: list[tuple[int, int]] = []
        self.threads: set[str] = set()

    def __call__(self, after: int, limit: int) -> list[tuple[int, Any]]:
        self.reads.append((after, limit))
        self.threads.add(threading.current_thread().name)
        return self.events[after : after + limit]


def drain(prefetch: Prefetcher, log: Log) -> list[int]:
    position, sizes = 0, []
    while events := prefetch.read(position):
        assert [n for n, _ in events] == list(range(position + 1, position + len(events) + 1))
        position = events[-1][0]
        sizes.append(len(events))
    assert position == len(log.events)
    return sizes


@pytest.mark.parametrize("threaded", [False, True])
def test_batches_grow_while_behind_and_shrink_when_caught_up(threaded: bool) -> None:
    log = Log(95)
    prefetch = Prefetcher(log, 5, threaded=threaded, catch_up_size=20)
    try:
        assert drain(prefetch, log) == [5, 20, 20, 20, 20, 10]
        assert prefetch.full is False  # the short batch: caught up
        log.events += [(n, f"event {n}") for n in range(96, 99)]
        assert len(prefetch.read(95)) == 3  # asked for the small size again
        assert log.reads[-1] == (95, 5)
        assert prefetch.full is False
    finally:
        prefetch.close()
    assert any(name.startswith("prefetch") for name in log.threads) is threaded


def test_a_full_batch_says_so_and_an_exact_end_is_found_by_the_next_read() -> None:
    log = Log(25)
    prefetch = Prefetcher(log, 5, threaded=False, catch_up_size=20)
    assert len(prefetch.read(0)) == 5 and prefetch.full
    assert len(prefetch.read(5)) == 20 and prefetch.full  # exactly the rest: still "full"
    assert prefetch.read(25) == [] and not prefetch.full
    prefetch.close()


def test_a_read_ahead_for_another_position_is_dropped() -> None:
    log = Log(50)
    prefetch = Prefetcher(log, 10, threaded=True, catch_up_size=10)
    try:
        prefetch.read(0)  # schedules a read after 10
        events = prefetch.read(3)  # someone else moved the position
        assert [n for n, _ in events] == list(range(4, 14))
    finally:
        prefetch.close()


def test_catch_up_size_is_never_below_batch_size() -> None:
    log = Log(30)
    prefetch = Prefetcher(log, 10, threaded=False, catch_up_size=4)
    assert drain(prefetch, log) == [10, 10, 10]
    prefetch.close()
