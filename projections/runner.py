"""Keeps the read models up to date: reads the notification log in batches and applies
each batch to every projection, with the new position, in one transaction.

- Wake-ups: an in-process ``poke()`` after a local commit, PostgreSQL LISTEN/NOTIFY for
  commits by other processes (projections/commit_listener.py), and a poll as the safety
  net (the only way on SQLite). Readers wait on projections/applied_position.py.
- PostgreSQL: one active runner per database (a session advisory lock); the others stand
  by, follow the recorded position for their waiters, and take over if the active one
  goes. Each batch also takes a transaction-level lock and checks the generation and
  position, so a rebuild's switch and a runner's batch never interleave.
- A batch that cannot be applied rolls back and stops the runner with a logged error
  naming the notification id; reads keep answering from the rows already there.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from commands.db_monitor import DatabaseUnavailable
from commands.gc_pause import gc_paused
from commands.leadership import AdvisoryLock, LockSession, lock_key
from commands.persistence import DatabaseConfig
from projections.applied_position import AppliedPosition, ProjectionStopped
from projections.commit_listener import listen_for_commits
from projections.db import Database
from projections.prefetch import CATCH_UP_BATCH, Prefetcher
from projections.runner_types import ReadLog
from projections.schema import (
    ApplyError,
    Projection,
    active_generation,
    create_generation,
    ensure_meta,
    expect_generation_and_position,
    generation_and_position,
    moved,
    read_position,
    write_position,
)
from projections.sql import statement

log = logging.getLogger(__name__)
__all__ = ["PIPELINED_BATCH", "ProjectionRunner", "ProjectionStopped", "write_lock"]


def write_lock(config: DatabaseConfig) -> int:
    """Held (per transaction) by every write to the read models: batches, rebuild switch."""
    return lock_key(config, "read-model-write")


# The database went away (a pool refusing while it is away, the library's errors from
# reading the log included): retried, never a reason to stop the projection.
_TRANSIENT = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
    DatabaseUnavailable,
    OperationalError,
    InterfaceError,
)
PIPELINED_BATCH = 200  # events: up to this many, a batch is written in pipeline mode
_BATCH_START = statement("pg_batch_start")  # the write lock; no wait for the WAL flush


class ProjectionRunner:
    """A background thread keeping every projection up to date."""

    def __init__(
        self,
        read_log: ReadLog,
        projections: list[Projection],
        db: Database,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
        listen_channel: str | None = None,
        catch_up_size: int = CATCH_UP_BATCH,
        lock_session: LockSession | None = None,
    ) -> None:
        self._read_log = read_log
        # batch_size events per batch when caught up, catch_up_size while behind.
        self._prefetch = Prefetcher(
            read_log, batch_size, threaded=db.postgres, catch_up_size=catch_up_size
        )
        self._projections = projections
        self._db = db
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._listen_channel = listen_channel
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._applied = AppliedPosition()  # how far; who waits for it; the stopping error
        # True when generation and position are what this runner's last batch wrote and
        # the projections keep what it wrote: the next batch may skip reading them.
        self._own = False
        self._threads: list[threading.Thread] = []
        # PostgreSQL: the active runner's lock, on a shared connection if given one.
        self._lead = AdvisoryLock(db.config, "active-runner", lock_session) if db.postgres else None

    @property
    def position(self) -> int:
        return self._applied.position

    @property
    def error(self) -> str | None:
        """Why the projection stopped (None while it runs)."""
        return self._applied.error

    @property
    def active(self) -> bool:
        """True when this runner writes (always on SQLite; the lock holder on PostgreSQL)."""
        return self._lead is None or self._lead.held

    def start(self) -> None:
        self.prepare()
        self._spawn("projection-runner", self._run)
        if self._db.postgres and self._listen_channel:
            listen = (self._db.config.conninfo(), self._listen_channel, self._wake, self._stop)
            self._spawn("projection-listen", listen_for_commits, *listen)

    def prepare(self) -> None:
        """Create the tables of the active generation and read its position."""
        with self._db.transaction() as cur:
            if self._db.postgres:
                cur.execute(statement("pg_write_lock"), (write_lock(self._db.config),))
            ensure_meta(cur)
            self._applied.generation = generation = active_generation(cur)
            create_generation(cur, self._projections, generation)
            self._applied.position = read_position(cur, generation)
        self._forget()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        self._release_active()
        self._prefetch.close()

    def poke(self) -> None:
        """New events were recorded: look now rather than at the next poll."""
        self._wake.set()

    def wait_for(self, position: int, timeout: float, poke: bool = True) -> None:
        """Block until ``position`` is applied; raise TimeoutError or ProjectionStopped."""
        if poke:
            self.poke()
        self._applied.wait_for(position, timeout)

    def applied(self, position: int) -> Future[None]:
        """A future that is done once ``position`` is applied (or fails with
        ProjectionStopped): lets a coroutine wait without holding a thread."""
        future = self._applied.applied(position)
        if not future.done():
            self.poke()
        return future

    # -- one batch ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Apply one batch; return how many events it held (0 when caught up)."""
        with gc_paused():  # the batch's objects die together (commands/gc_pause.py)
            return self._run_batch()

    def _run_batch(self) -> int:
        """A live batch on PostgreSQL after one of this runner's own is checked at COMMIT
        (one round trip, not four) and uses the rows the task projection kept; if another
        writer moved generation or position, the check fails it and it runs the long way."""
        events = self._prefetch.read(self._applied.position)
        if not events:
            return 0
        # A small batch (the usual one when caught up) in pipeline mode: its dozen
        # statements cost a few round trips. A large one (catching up) uses COPY, which
        # pipeline mode does not allow.
        pipelined = self._db.postgres and len(events) <= PIPELINED_BATCH
        checked_at_commit = pipelined and self._own
        try:
            generation, position, applied = self._write(events, pipelined, checked_at_commit)
        except Exception as exc:
            self._forget()
            if checked_at_commit and moved(exc):  # another runner wrote, or a rebuild
                return self._run_batch()  # switched: again, reading where things are
            raise
        self._applied.advance(generation, position)
        for projection in self._projections:
            projection.remember()
        self._own = True
        return applied

    def _write(
        self, events: list[tuple[int, Any]], pipelined: bool, checked_at_commit: bool
    ) -> tuple[int, int, int]:
        """One batch in one transaction: (generation, position, events applied)."""
        first = events[0][0]
        try:
            with self._db.transaction(
                pipelined=pipelined and not checked_at_commit, deferred=checked_at_commit
            ) as cur:
                if self._db.postgres:
                    # Read models are derived from the event store, and rows and position
                    # commit together: a crash may lose the last batches, never half of
                    # one, and they are applied again. So no waiting for the WAL flush.
                    cur.execute(_BATCH_START, (write_lock(self._db.config),))
                current = self._applied
                if checked_at_commit:
                    generation, position = current.generation, current.position
                    expect_generation_and_position(cur, generation, position)
                else:
                    generation, position = generation_and_position(cur)
                    if (generation, position) != (current.generation, current.position):
                        self._forget()  # someone else wrote: nothing kept can be trusted
                    if generation != current.generation:  # a rebuild switched generations
                        create_generation(cur, self._projections, generation)
                    if position != current.position:  # someone else moved it: from there
                        events = self._read_log(position, self._batch_size)
                        first = events[0][0] if events else first
                if events:
                    for projection in self._projections:
                        projection.apply(cur, events, generation)
                    write_position(cur, generation, events[-1][0], check=not checked_at_commit)
                    position = events[-1][0]
        except psycopg.Error as exc:  # pipelined: a write's error shows at a sync, or COMMIT
            raise ApplyError(first, exc) from exc
        return generation, position, len(events)

    def _forget(self) -> None:
        self._own = False
        for projection in self._projections:
            projection.forget()

    # -- loops --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.active and not self._try_become_active():
                self._follow()
                self._stop.wait(self._poll_interval)
                continue
            try:
                self.run_once()
            except ApplyError as exc:
                if isinstance(exc.cause, _TRANSIENT):
                    self._retry_later(exc.cause)
                    continue
                self._fail(f"projection stopped at notification {exc.position}: {exc.cause!r}")
                return
            except _TRANSIENT as exc:  # the database went away for a moment
                self._retry_later(exc)
                continue
            except Exception as exc:  # an undecodable event, say
                self._fail(f"projection stopped: {exc!r}")
                return
            if not self._prefetch.full:  # caught up: wait for more
                self._wake.wait(self._poll_interval)
                self._wake.clear()

    def _retry_later(self, exc: BaseException) -> None:
        log.warning("projection: %r; retrying in 1 s", exc)
        self._release_active()
        self._stop.wait(1.0)

    def _follow(self) -> None:
        """Standby: keep the recorded position for waiters, written by the active runner."""
        self._forget()
        try:
            with self._db.read() as cur:
                generation = active_generation(cur)
                position = read_position(cur, generation)
        except DatabaseUnavailable:  # logged once, by the monitor; polled every 50 ms
            return
        except _TRANSIENT as exc:
            log.warning("projection standby: %r", exc)
            return
        self._applied.advance(generation, position)

    def _try_become_active(self) -> bool:
        return self._lead is None or self._lead.acquire()

    def _release_active(self) -> None:
        self._forget()  # another runner may write from now on
        if self._lead is not None:
            self._lead.release()

    def _fail(self, message: str) -> None:
        log.error(message)
        self._applied.stop(message)
