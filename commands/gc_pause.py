"""No cyclic garbage collection while a batch of events is decoded and applied.

A batch of thousands of decoded events keeps tens of thousands of young containers alive
(each event's state dict, its actor, input, lists) until it is written. CPython's
collector is triggered by allocations: every few hundred it scans the young generation,
and every so often an older one, which by then holds the batch so far: a large share of
a catch-up's CPU, finding nothing, since these objects are freed by reference counting
when the batch is done. So the collector is paused for the batch and resumed after it, as
msgspec's and Instagram's guides suggest for allocation-heavy bursts; cycles created
meanwhile (by any thread) wait for the next collection, which comes with the next
allocations after the pause.

``gc.disable`` is process-wide, so pauses are counted: overlapping pauses (the runner
and its read-ahead thread) resume the collector only when the last one ends, and only
if it was enabled when the first began.

One switch for the process (``configure``, from ``TASKEXEC_FAST_GC_PAUSE``): off, a pause
is a no-op and ``settle_heap`` leaves the collector as CPython configured it.
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

    def __init__(self, collector: ModuleType | Any = gc, enabled: bool = True) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False
        self.enabled = enabled  # False: ``paused`` changes nothing

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The cyclic collector off for the ``with`` block (reference counting still
        frees); nothing at all while the pauses are switched off."""
        if not self.enabled:  # decided once per block: the count stays balanced
            yield
            return
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


_process = GcPause()
#: The process's pauses of ``gc``: ``with gc_paused(): …``.
gc_paused = _process.paused


def configure(enabled: bool) -> None:
    """Switch the process's pauses and ``settle_heap`` on or off (on by default)."""
    _process.enabled = enabled


def enabled() -> bool:
    return _process.enabled


# Allocations between young collections (CPython's default: 700). Under load the young
# generation is mostly live in-flight work (a bulk request's tasks, a batch of reports,
# the task cache's new entries): scanning it often finds nothing to collect.
YOUNG_THRESHOLD = 100_000


def settle_heap(collector: ModuleType | Any = gc, young: int = YOUNG_THRESHOLD) -> None:
    """For a long-running process, once it has started: collect, then freeze what exists
    (the app, modules, caches) so that no later collection scans it again (a full one
    would hold the GIL over the whole heap), and collect the young generation less often
    (YOUNG_THRESHOLD). Garbage without cycles is still freed at once by reference
    counting; only cycles wait a little longer. Nothing when switched off (``configure``).
    """
    if not _process.enabled:
        return
    collector.collect()
    collector.freeze()
    _, middle, old = collector.get_threshold()
    collector.set_threshold(young, middle, old)
