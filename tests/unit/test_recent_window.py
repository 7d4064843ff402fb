"""Unit tests of the in-memory window of recorded events (commands/recent.py)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from commands import recent
from commands.recent import RecentEvents


def recordings(*ids: int) -> list[Any]:
    return [SimpleNamespace(notification=SimpleNamespace(id=i), domain_event=f"e{i}") for i in ids]


def test_a_contiguous_run_after_the_position_up_to_the_limit():
    window = RecentEvents()
    window.add(recordings(1, 2, 3, 4))
    assert window.after(0, 10) == [(1, "e1"), (2, "e2"), (3, "e3"), (4, "e4")]
    assert window.after(1, 2) == [(2, "e2"), (3, "e3")]
    assert window.after(4, 10) is None  # nothing after the last one: the store decides


def test_a_run_stops_at_the_first_id_not_held():
    window = RecentEvents()
    window.add(recordings(5, 6, 8))  # 7: another process's, or burned
    assert window.after(4, 10) == [(5, "e5"), (6, "e6")]
    assert window.after(6, 10) is None
    assert window.after(7, 10) == [(8, "e8")]
    assert window.after(3, 10) is None  # 4 is not held: never skipped over


def test_commits_added_out_of_order_read_in_order():
    window = RecentEvents()
    window.add(recordings(3, 4))
    window.add(recordings(1, 2))
    assert [p for p, _ in window.after(0, 10) or []] == [1, 2, 3, 4]


def test_the_oldest_added_leave_first_beyond_the_capacity():
    window = RecentEvents(capacity=3)
    window.add(recordings(1, 2))
    window.add(recordings(3, 4, 5))
    assert window.after(0, 10) is None
    assert window.after(2, 10) == [(3, "e3"), (4, "e4"), (5, "e5")]
    assert (window.hits, window.misses) == (1, 1)


def test_a_miss_while_a_put_is_under_way_waits_for_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recent, "RECORDING_WAIT_S", 30.0)  # a miss would not come back early
    window = RecentEvents()
    token = window.begin()
    timer = threading.Timer(0.01, window.add, (recordings(1, 2), token))
    timer.start()
    try:
        assert window.after(0, 10) == [(1, "e1"), (2, "e2")]
    finally:
        timer.join()


def test_a_failed_put_releases_the_readers_waiting_for_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recent, "RECORDING_WAIT_S", 30.0)
    window = RecentEvents()
    token = window.begin()
    timer = threading.Timer(0.01, window.add, ([], token))
    timer.start()
    try:
        began = time.monotonic()
        assert window.after(0, 10) is None
        assert time.monotonic() - began < 10  # released by the failed put, not the timeout
    finally:
        timer.join()


def test_a_put_that_never_ends_holds_a_reader_only_briefly():
    window = RecentEvents()
    window.begin()
    began = time.monotonic()
    assert window.after(0, 10) is None
    assert time.monotonic() - began >= recent.RECORDING_WAIT_S * 0.9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_every_named_reader_has_read_is_dropped():
    window = RecentEvents(clock=Clock())
    window.add(recordings(1, 2, 3, 4))
    assert window.after(0, 2, reader="relay") == [(1, "e1"), (2, "e2")]
    assert window.after(0, 10, reader="projections") is not None
    window.add(recordings(5))  # trimmed as it adds: the slowest reader is at 0
    assert len(window) == 5
    window.after(3, 10, reader="projections")
    window.after(2, 10, reader="relay")
    window.add(recordings(6))
    assert len(window) == 4  # 3..6: the relay asks after 2 next
    assert window.after(2, 10, reader="relay") == [(3, "e3"), (4, "e4"), (5, "e5"), (6, "e6")]
    assert window.after(1, 10, reader="relay") is None  # dropped: read from the store


def test_nothing_is_kept_once_no_named_reader_follows():
    clock = Clock()
    window = RecentEvents(clock=clock)
    window.after(0, 10, reader="relay")
    window.add(recordings(1, 2))
    assert len(window) == 2
    clock.now = recent.READER_IDLE_S + 1  # the relay stopped asking (another replica leads)
    window.add(recordings(3))
    assert len(window) == 0
    window.after(3, 10, reader="relay")  # it leads again: from here on, kept for it
    window.add(recordings(4))
    assert window.after(3, 10, reader="relay") == [(4, "e4")]


def test_an_idle_reader_does_not_hold_the_window_for_a_following_one():
    clock = Clock()
    window = RecentEvents(clock=clock)
    window.after(0, 10, reader="relay")
    clock.now = recent.READER_IDLE_S + 1
    window.after(2, 10, reader="projections")
    window.add(recordings(1, 2, 3))
    assert window.after(2, 10, reader="projections") == [(3, "e3")]
    assert len(window) == 1


def test_without_named_readers_only_the_capacity_bounds_the_window():
    window = RecentEvents(capacity=3, clock=Clock())
    window.add(recordings(1, 2, 3))
    assert window.after(0, 10) == [(1, "e1"), (2, "e2"), (3, "e3")]
    window.add(recordings(4))
    assert len(window) == 3


def test_a_commit_added_out_of_order_is_dropped_only_past_the_readers():
    window = RecentEvents(clock=Clock())
    window.after(0, 10, reader="relay")
    window.add(recordings(3, 4))
    window.add(recordings(1, 2))
    window.after(2, 10, reader="relay")
    window.add(recordings(5))
    assert window.after(2, 10, reader="relay") == [(3, "e3"), (4, "e4"), (5, "e5")]
