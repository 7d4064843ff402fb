"""Runs a projection: reads the notification log in batches, applies each batch and the
new position in one transaction, and wakes whoever waits for a position.

A batch the projection cannot apply stops this runner with a logged error naming the
notification id; the API keeps answering from the rows it has (issue: never wedge reads).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from projections.db import Database
from projections.tasks import TaskProjection

log = logging.getLogger(__name__)

ReadLog = Callable[[int, int], list[tuple[int, Any]]]


class ProjectionStopped(RuntimeError):
    """The projection hit an event it cannot apply and stopped."""


class ProjectionRunner:
    """A background thread keeping one projection up to date."""

    def __init__(
        self,
        read_log: ReadLog,
        projection: TaskProjection,
        db: Database,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
    ) -> None:
        self._read_log = read_log
        self._projection = projection
        self._db = db
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._position = 0
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def position(self) -> int:
        return self._position

    def start(self) -> None:
        self._projection.create_tables(self._db)
        with self._db.read() as cur:
            self._position = self._projection.position(cur)
        self._thread = threading.Thread(
            target=self._run, name=f"projection-{self._projection.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """New events were recorded: look now rather than at the next poll."""
        self._wake.set()

    def wait_for(self, position: int, timeout: float) -> None:
        """Block until ``position`` is applied; raise TimeoutError or ProjectionStopped."""
        self.poke()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._position >= position or self.error is not None, timeout
            )
        if self.error is not None and self._position < position:
            raise ProjectionStopped(self.error)
        if not ok:
            raise TimeoutError(f"projection {self._projection.name} did not reach {position}")

    def run_once(self) -> int:
        """Apply one batch; return how many events it held (0 when caught up)."""
        events = self._read_log(self._position, self._batch_size)
        if not events:
            return 0
        failing = events[0][0]
        try:
            with self._db.transaction() as cur:
                for position, event in events:
                    failing = position
                    self._projection.apply(cur, event)
                self._projection.set_position(cur, events[-1][0])
        except Exception as exc:
            raise _BatchFailed(failing, exc) from exc
        with self._changed:
            self._position = events[-1][0]
            self._changed.notify_all()
        return len(events)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                applied = self.run_once()
            except _TRANSIENT as exc:  # the database went away for a moment: try again
                log.warning("projection %s: %r; retrying", self._projection.name, exc)
                self._stop.wait(1.0)
                continue
            except _BatchFailed as exc:
                if isinstance(exc.cause, _TRANSIENT):
                    log.warning("projection %s: %r; retrying", self._projection.name, exc.cause)
                    self._stop.wait(1.0)
                    continue
                self._fail(
                    f"projection {self._projection.name} stopped at notification "
                    f"{exc.position}: {exc.cause!r}"
                )
                return
            except Exception as exc:  # e.g. an undecodable event or a lost connection
                self._fail(f"projection {self._projection.name} stopped: {exc!r}")
                return
            if applied < self._batch_size:
                self._wake.wait(self._poll_interval)
                self._wake.clear()

    def _fail(self, message: str) -> None:
        log.error(message)
        with self._changed:
            self.error = message
            self._changed.notify_all()


_TRANSIENT = (sqlite3.OperationalError, psycopg.OperationalError)


class _BatchFailed(Exception):
    def __init__(self, position: int, cause: Exception) -> None:
        super().__init__(position, cause)
        self.position = position
        self.cause = cause
