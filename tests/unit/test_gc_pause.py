"""commands/gc_pause.py: the collector is off inside, restored after, counted across
overlapping pauses and threads, never switched on if it was off before; a started process
settles its heap (collected, frozen, young collections spaced out). Switched off
(TASKEXEC_FAST_GC_PAUSE=off), neither touches the collector; and nothing else does.

The logic is tested on a collector of its own (a stand-in with gc's three methods): the
real ``gc`` is process-wide, and other tests' background threads pause it too."""

from __future__ import annotations

import gc
import re
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import gc_pause
from commands.gc_pause import YOUNG_THRESHOLD, GcPause, gc_paused, settle_heap

ROOT = Path(__file__).parents[2]


class Collector:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.switches = 0

    def isenabled(self) -> bool:
        return self.enabled

    def enable(self) -> None:
        self.enabled = True
        self.switches += 1

    def disable(self) -> None:
        self.enabled = False
        self.switches += 1


def test_off_inside_on_after() -> None:
    collector = Collector()
    pause = GcPause(collector)
    with pause.paused():
        assert not collector.enabled
    assert collector.enabled


def test_restored_when_the_block_raises() -> None:
    collector = Collector()
    pause = GcPause(collector)
    with pytest.raises(ZeroDivisionError), pause.paused():
        1 / 0  # noqa: B018
    assert collector.enabled


def test_nested_pauses_resume_at_the_outermost_end() -> None:
    collector = Collector()
    pause = GcPause(collector)
    with pause.paused():
        with pause.paused():
            assert not collector.enabled
        assert not collector.enabled
    assert collector.enabled
    assert collector.switches == 2  # one off, one on


def test_a_collector_switched_off_by_the_application_stays_off() -> None:
    collector = Collector(enabled=False)
    pause = GcPause(collector)
    with pause.paused():
        assert not collector.enabled
    assert not collector.enabled


def test_overlapping_pauses_in_two_threads() -> None:
    collector = Collector()
    pause = GcPause(collector)
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with pause.paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(5)
    with pause.paused():
        pass
    assert not collector.enabled  # the other thread's pause still holds
    release.set()
    thread.join(5)
    assert collector.enabled


def test_the_real_collector_leaves_cycles_made_in_a_pause_for_after_it() -> None:
    class Node:
        other: object

    with gc_paused():
        assert not gc.isenabled()
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        assert ref() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert ref() is None


class Settling:
    """A stand-in recording what ``settle_heap`` asks of the collector, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threshold: tuple[int, ...] = (700, 10, 10)

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")

    def get_threshold(self) -> tuple[int, ...]:
        return self.threshold

    def set_threshold(self, *threshold: int) -> None:
        self.calls.append("set_threshold")
        self.threshold = threshold


def test_settle_heap_collects_then_freezes_and_spaces_young_collections() -> None:
    collector = Settling()
    settle_heap(collector, young=12_345)
    assert collector.calls == ["collect", "freeze", "set_threshold"]  # garbage never frozen
    assert collector.threshold == (12_345, 10, 10)  # the older generations keep theirs


def test_settle_heap_on_the_real_collector_freezes_what_exists() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    survivor: list[object] = [[] for _ in range(100)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= before_frozen + len(survivor)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[1:] == before_threshold[1:]
    finally:
        gc.unfreeze()  # this test process goes on collecting as before
        gc.set_threshold(*before_threshold)


# -- switched off ----------------------------------------------------------------------------


@pytest.fixture
def switched_off() -> Iterator[None]:
    gc_pause.configure(False)
    try:
        yield
    finally:
        gc_pause.configure(True)


def test_a_pause_switched_off_leaves_the_collector_alone() -> None:
    collector = Collector()
    pause = GcPause(collector, enabled=False)
    with pause.paused(), pause.paused():
        assert collector.enabled
    assert collector.switches == 0


def test_switching_during_a_pause_keeps_the_count_balanced() -> None:
    collector = Collector()
    pause = GcPause(collector)
    with pause.paused():
        pause.enabled = False
        with pause.paused():  # taken off: not counted
            assert not collector.enabled
        pause.enabled = True
        assert not collector.enabled
    assert collector.enabled and collector.switches == 2


@pytest.mark.usefixtures("switched_off")
def test_the_process_s_pauses_and_settling_switched_off() -> None:
    assert not gc_pause.enabled()
    with gc_paused():
        assert gc.isenabled()
    collector = Settling()
    settle_heap(collector, young=12_345)
    assert collector.calls == [] and collector.threshold == (700, 10, 10)


def test_the_switch_is_on_by_default() -> None:
    assert gc_pause.enabled()


def test_no_other_module_drives_the_collector() -> None:
    """One GC-pause implementation: only commands/gc_pause.py switches, freezes or
    re-tunes the collector."""
    calls = re.compile(r"\bgc\.(disable|enable|freeze|unfreeze|set_threshold)\(")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("api", "commands", "domain", "projections", "workers", "bench")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "gc_pause.py" and calls.search(path.read_text())
    ]
    assert offenders == []
