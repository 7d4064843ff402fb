"""Keeps the read models up to date: reads the notification log in batches and applies
each batch to every projection, with the new position, in one transaction.

- Wake-ups: an in-process ``poke()`` after a local commit, PostgreSQL LISTEN/NOTIFY for
  commits by other processes, and a poll as the safety net (the only way on SQLite).
- PostgreSQL: one active runner per database (a session advisory lock); the others stand
  by, follow the recorded position for their waiters, and take over if the active one
  goes. Each batch also takes a transaction-level lock and checks the generation and
  position, so a rebuild's switch and a runner's batch never interleave.
- A live batch on PostgreSQL after one of this runner's own is checked without waiting:
  a statement that fails the transaction unless generation and position are still the
  ones it wrote (then the batch runs again the long way), and the task projection uses
  the rows it kept from its own batches (projections/tasks.py). Such a batch is one
  round trip, at its COMMIT, instead of four.
- A batch that cannot be applied rolls back and stops the runner with a logged error
  naming the notification id; reads keep answering from the rows already there.
"""

from __future__ import annotations

import heapq
import itertools
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

log = logging.getLogger(__name__)


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


class ProjectionStopped(RuntimeError):
    """The projection hit an event it cannot apply and stopped."""


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
        self._changed = threading.Condition()
        self._position = 0
        self._generation = 0
        # True when generation and position are what this runner's last batch wrote and
        # the projections keep what it wrote: the next batch may skip reading them.
        self._own = False
        self._threads: list[threading.Thread] = []
        # PostgreSQL: the active runner's lock, on a shared connection if given one.
        self._lead = AdvisoryLock(db.config, "active-runner", lock_session) if db.postgres else None
        self._waiters: list[tuple[int, int, Future[None]]] = []  # a heap by position
        self._waiter_ids = itertools.count()
        self.error: str | None = None

    @property
    def position(self) -> int:
        return self._position

    @property
    def active(self) -> bool:
        """True when this runner writes (always on SQLite; the lock holder on PostgreSQL)."""
        return self._lead is None or self._lead.held

    def start(self) -> None:
        self.prepare()
        self._spawn(self._run, "projection-runner")
        if self._db.postgres and self._listen_channel:
            self._spawn(self._listen, "projection-listen")

    def prepare(self) -> None:
        """Create the tables of the active generation and read its position."""
        with self._db.transaction() as cur:
            if self._db.postgres:
                cur.execute("SELECT pg_advisory_xact_lock(?)", (write_lock(self._db.config),))
            ensure_meta(cur)
            self._generation = active_generation(cur)
            create_generation(cur, self._projections, self._generation)
            self._position = read_position(cur, self._generation)
        self._forget()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
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
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._position >= position or self.error is not None, timeout
            )
        if self.error is not None and self._position < position:
            raise ProjectionStopped(self.error)
        if not ok:
            raise TimeoutError(f"read models did not reach position {position}")

    def applied(self, position: int) -> Future[None]:
        """A future that is done once ``position`` is applied (or fails with
        ProjectionStopped): lets a coroutine wait without holding a thread."""
        future: Future[None] = Future()
        with self._changed:
            if self._position >= position:
                future.set_result(None)
            elif self.error is not None:
                future.set_exception(ProjectionStopped(self.error))
            else:
                heapq.heappush(self._waiters, (position, next(self._waiter_ids), future))
        if not future.done():
            self.poke()
        return future

    def _resolve_waiters(self) -> None:
        """Resolve the waiters that are satisfied (called with ``_changed`` held)."""
        while self._waiters and self._waiters[0][0] <= self._position:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)
        if self.error is not None:
            for _, _, future in self._waiters:
                if not future.done():
                    future.set_exception(ProjectionStopped(self.error))
            self._waiters.clear()

    # -- one batch ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Apply one batch; return how many events it held (0 when caught up)."""
        with gc_paused():  # the batch's objects die together (commands/gc_pause.py)
            return self._run_batch()

    def _run_batch(self) -> int:
        events = self._prefetch.read(self._position)
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
        self._advance(generation, position)
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
                    cur.execute(
                        "SELECT set_config('synchronous_commit', 'off', true), "
                        "pg_advisory_xact_lock(?)",
                        (write_lock(self._db.config),),
                    )
                if checked_at_commit:
                    generation, position = self._generation, self._position
                    expect_generation_and_position(cur, generation, position)
                else:
                    generation, position = generation_and_position(cur)
                    if (generation, position) != (self._generation, self._position):
                        self._forget()  # someone else wrote: nothing kept can be trusted
                    if generation != self._generation:  # a rebuild switched generations
                        create_generation(cur, self._projections, generation)
                    if position != self._position:  # someone else moved it: from there
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

    def _advance(self, generation: int, position: int) -> None:
        with self._changed:
            self._generation = generation
            self._position = position
            self._resolve_waiters()
            self._changed.notify_all()

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
        self._advance(generation, position)

    def _try_become_active(self) -> bool:
        return self._lead is None or self._lead.acquire()

    def _release_active(self) -> None:
        self._forget()  # another runner may write from now on
        if self._lead is not None:
            self._lead.release()

    def _listen(self) -> None:
        """Wake the runner on PostgreSQL NOTIFY from any process's commit."""
        assert self._listen_channel is not None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._db.config.conninfo(), autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self._listen_channel}"')
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except psycopg.Error as exc:
                log.warning("projection LISTEN: %r; reconnecting", exc)
                self._stop.wait(1.0)

    def _fail(self, message: str) -> None:
        log.error(message)
        with self._changed:
            self.error = message
            self._resolve_waiters()
            self._changed.notify_all()
