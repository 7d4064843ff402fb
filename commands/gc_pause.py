"""No cyclic garbage collection while a batch of events is decoded and applied.

A batch of thousands of decoded events keeps tens of thousands of young containers alive
(each event's state dict, its actor, input, lists) until it is written. CPython's
collector is triggered by allocations: every few hundred it scans the young generation,
and every so often an older one, which by then holds the batch so far. Catching up on
SQLite spent about a third of its CPU there (measured: 34 -> 22 µs per event with the
collector off), finding nothing: these objects are freed by reference counting when the
batch is done. So the collector is paused for the batch and resumed after it, as
msgspec's and Instagram's guides suggest for allocation-heavy bursts; cycles created
meanwhile (by any thread) wait for the next collection, which comes with the next
allocations after the pause.

``gc.disable`` is process-wide, so pauses are counted: overlapping pauses (the runner
and its read-ahead thread) resume the collector only when the last one ends, and only
if it was enabled when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


class GcPause:
    """Counted pauses of one collector (``gc`` itself; another object with
    ``isenabled``, ``enable`` and ``disable`` in tests)."""

    def __init__(self, collector: ModuleType | Any = gc) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The cyclic collector off for the ``with`` block (reference counting still
        frees)."""
        with self._lock:
            if self._depth == 0:
                self._resume = self._collector.isenabled()
                self._collector.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._resume:
                    self._collector.enable()


#: The process's pauses of ``gc``: ``with gc_paused(): …``.
gc_paused = GcPause().paused


# Allocations between young collections (CPython's default: 700). In serve under bulk load
# (20,000 tasks, gc.callbacks timing): 10,000 spent 580-650 ms in young collections and
# ~210 ms in middle ones; 50,000: 122 + 30 ms; 100,000: 58 + 16 ms, with as many
# collections (most come when a batch's pause ends) and nothing more collected: the
# young generation is mostly live in-flight work (a bulk request's 500 tasks, a batch of
# reports, the task cache's new entries), scanned for nothing each time.
YOUNG_THRESHOLD = 100_000


def settle_heap(collector: ModuleType | Any = gc, young: int = YOUNG_THRESHOLD) -> None:
    """For a long-running process, once it has started: collect, then freeze what exists
    (the app, modules, caches: ~90,000 objects in ``serve``) so that no later collection
    scans it again, and collect the young generation less often.

    Measured in ``serve`` under load (bench, 5,000 tasks, thread CPU in the collector):
    0.55 s with the defaults, 0.12 s like this; a full collection scanned the whole heap
    (~95 ms, holding the GIL) and now finds only what is young (see YOUNG_THRESHOLD for
    why that is collected so rarely). Garbage without cycles is
    still freed at once by reference counting; only cycles wait a little longer.
    """
    collector.collect()
    collector.freeze()
    _, middle, old = collector.get_threshold()
    collector.set_threshold(young, middle, old)
