"""The events this process recorded lately, kept in memory for its own readers.

The relay and the projection runner of a ``serve`` process read the notification log
right after that process's own commits: a SELECT, and every row decoded back into the
event object the command had in hand a moment before. ``RecentEvents`` keeps those
objects (by notification id, a bounded window) and ``TaskService.follow_log`` answers
from it when it holds the whole run of events right after the reader's position (a page
that may end sooner than the store's would: at the last of this process's events).
Anything else — a gap (an id another process used, or one a rolled-back transaction
burned), a reader further behind than the window — is read from the store as before.
``read_log`` stays the store's exact page, for everyone else.

Safe because an event enters the window only after its transaction committed, ids are
unique, and a run is taken only if it is contiguous from the reader's position: every
id in it is an event of ours, and none is missing. The events are the very objects that
were stored (domain events are immutable; the test suite checks that each equals its
decoded copy, type for type).

The window keeps only what a reader may still ask for. A reader that names itself
(``after(..., reader=...)``) tells the window where it is; events at or before the
slowest such reader's position are dropped, and when every named reader has stopped
asking (``READER_IDLE_S``: a replica that is not the relay's leader, a stopped
projection) nothing is kept at all. The window is what the collector's full passes scan
again and again (commands/gc_pause.py): held at the readers' lag, usually a few hundred
events, instead of ``WINDOW``, a full pass is a few milliseconds, not tens.

Switched off (``TASKEXEC_FAST_RECENT_EVENTS=off``), TaskService keeps the library's event
store and no window: ``follow_log`` is ``read_log``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import EventStore, Recording

WINDOW = 20_000  # events: a few seconds of full load; a few MB
RECORDING_WAIT_S = 0.05  # a put usually ends within milliseconds; then the store is read
READER_IDLE_S = 5.0  # a named reader that has not asked for this long is not following


class RecentEvents:
    """A thread-safe window of (notification id -> event) recorded by this process."""

    def __init__(self, capacity: int = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._clock = clock
        # Named readers: name -> (position it read up to, when it last asked).
        self._readers: dict[str, tuple[int, float]] = {}
        self._changed = threading.Condition()
        self._events: dict[int, Any] = {}  # in the order they were added
        self._recording: set[int] = set()  # puts under way (committed, maybe, not added)
        self._tokens = itertools.count()
        self.hits = 0  # reads answered from memory, and misses: for tests and stats
        self.misses = 0

    def begin(self) -> int:
        """A put starts: readers that miss meanwhile wait for it (``after``)."""
        with self._changed:
            token = next(self._tokens)
            self._recording.add(token)
            return token

    def add(self, recordings: Sequence[Recording[Any]], token: int | None = None) -> None:
        """Recorded (committed): keep them; the put ``token`` is over."""
        with self._changed:
            events = self._events
            for recording in recordings:
                events[recording.notification.id] = recording.domain_event
            self._trim()
            if token is not None:
                self._recording.discard(token)
            self._changed.notify_all()

    def after(
        self, position: int, limit: int, reader: str | None = None
    ) -> list[tuple[int, Any]] | None:
        """Up to ``limit`` events from ``position + 1`` on, stopping at the first id not
        held; None when even ``position + 1`` is not held. A ``reader`` that names itself
        will not ask for ``position`` or anything before it again: what no reader needs
        any more is dropped.

        A reader is often woken by the database (NOTIFY) a moment before the committing
        thread has added its events here: on a miss while puts are under way, wait for
        those (at most ``RECORDING_WAIT_S``) and look again."""
        with self._changed:
            if reader is not None:
                self._readers[reader] = (position, self._clock())
            run = self._run(position, limit)
            if not run and self._recording:
                under_way = set(self._recording)
                self._changed.wait_for(
                    lambda: not under_way & self._recording, timeout=RECORDING_WAIT_S
                )
                run = self._run(position, limit)
            if not run:
                self.misses += 1
                return None
            self.hits += 1
            return run

    def __len__(self) -> int:
        return len(self._events)

    def _trim(self) -> None:
        """Drop the oldest events beyond the capacity, and the leading ones no reader
        needs (at or before the slowest following reader's position)."""
        events = self._events
        drop = max(0, len(events) - self._capacity)
        floor = self._floor()
        if floor is not None:
            leading = 0
            for key in events:  # in the order added: commits may land out of order
                if key > floor:
                    break
                leading += 1
            drop = max(drop, leading)
        for key in list(itertools.islice(events, drop)):
            del events[key]

    def _floor(self) -> float | None:
        """The position every following reader has read up to; infinity when named
        readers exist but none follows any more; None when no reader named itself."""
        if not self._readers:
            return None
        now = self._clock()
        following = [at for at, seen in self._readers.values() if now - seen <= READER_IDLE_S]
        return min(following) if following else float("inf")

    def _run(self, position: int, limit: int) -> list[tuple[int, Any]]:
        get = self._events.get
        run: list[tuple[int, Any]] = []
        at = position + 1
        while len(run) < limit:
            event = get(at)
            if event is None:
                break
            run.append((at, event))
            at += 1
        return run


class RememberingEventStore(EventStore[Any]):
    """The library's event store, adding what it recorded to a ``RecentEvents``."""

    def __init__(self, mapper: Any, recorder: Any, recent: RecentEvents) -> None:
        super().__init__(mapper, recorder)
        self.recent = recent

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[Any]]:
        token = self.recent.begin()
        recordings: list[Recording[Any]] = []
        try:
            recordings = super().put(domain_events, **kwargs)
        finally:
            self.recent.add(recordings, token)  # none if it failed: the put is over
        return recordings
