"""Read the notification log in large pages, decoded, at a fraction of the library's cost.

Projections (catch-up, rebuild) and the relay read the whole log through
``TaskService.read_log``, and the library's per-event path (``select_notifications``, then
``Mapper.to_domain_event``) is most of a catch-up's Python (docs/benchmarks.md, "The write
side's shortcuts, measured"). On SQLite and PostgreSQL one query per page reads plain
tuples (commands/event_reader.py) and the decoder builds each event as
``Mapper.to_domain_event`` does (commands/event_decoder.py). Anything else (a cipher, a
compressor, another transcoder, the in-memory recorder of commands/memory.py) takes the
library's public path, whole.
"""

from __future__ import annotations

import time
from typing import Any

from eventsourcing.persistence import InterfaceError, Mapper, OperationalError

from commands.event_decoder import Decoded, EventDecoder, UndecodableEvent
from commands.event_reader import EventReader
from commands.gc_pause import gc_paused
from commands.transcoder import PayloadSafeTranscoder

_ATTEMPTS = 10


class LogReader:
    """``read(after, limit)``: the decoded events after position ``after``, in order."""

    def __init__(self, reader: EventReader, decoder: EventDecoder, mapper: Mapper[Any]) -> None:
        self._reader = reader
        self._decoder = decoder
        self._mapper = mapper
        self.fast = (
            reader.tables is not None
            and type(mapper.transcoder) is PayloadSafeTranscoder
            and not mapper.cipher
            and not mapper.compressor
        )

    def read(self, after: int, limit: int) -> Decoded:
        if not self.fast:
            return self.read_with_library(after, limit)
        for attempt in range(_ATTEMPTS):
            try:
                with gc_paused(), self._reader.log_rows(after, limit) as (rows, convert):
                    # (gc paused: a page of young objects, commands/gc_pause.py)
                    return self._decoder.events(rows, convert)
            except (InterfaceError, OperationalError):  # the connection went away
                # Retried as the library's PostgreSQL select_notifications retries.
                if not self._reader.postgres or attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def read_with_library(self, after: int, limit: int) -> Decoded:
        """The library's own path (the reference the fast path must agree with)."""
        notifications = self._reader.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        decoded: Decoded = []
        for notification in notifications:
            try:
                decoded.append((notification.id, self._mapper.to_domain_event(notification)))
            except Exception as exc:
                raise UndecodableEvent(notification.id, exc) from exc
        return decoded
